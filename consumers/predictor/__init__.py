"""The prediction consumer: requests in, results tagged ``champion``/``challenger`` out.

``PredictionConsumer(settings, mock_fallback=False).run(stop)`` is the process;
``PredictionPipeline`` the per-request steps; ``Lanes`` the per-model bulkheads;
``RegistryView`` its view of the registry. Its settings are ``Settings.predictor``
(``REGISTRY_PREDICTOR_*``) and the limits ``Settings.limits`` (``REGISTRY_LIMITS_*``).
"""

from consumers.predictor.consumer import PredictionConsumer, PredictorStats
from consumers.predictor.lanes import Lane, Lanes
from consumers.predictor.pipeline import PredictionPipeline
from consumers.predictor.view import RegistryView

__all__ = [
    "Lane",
    "Lanes",
    "PredictionConsumer",
    "PredictionPipeline",
    "PredictorStats",
    "RegistryView",
]
