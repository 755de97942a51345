"""The prediction consumer: requests in, results tagged ``champion``/``challenger`` out.

``PredictionConsumer(settings, mock_fallback=False).run(stop)`` is the process;
``PredictionPipeline`` the per-batch logic; ``RegistryView`` its view of the registry. Its
settings are ``Settings.predictor`` (``REGISTRY_PREDICTOR_*``).
"""

from consumers.predictor.consumer import PredictionConsumer, PredictorStats
from consumers.predictor.pipeline import BatchOutcome, PredictionPipeline
from consumers.predictor.view import RegistryView

__all__ = [
    "BatchOutcome",
    "PredictionConsumer",
    "PredictionPipeline",
    "PredictorStats",
    "RegistryView",
]
