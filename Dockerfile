# The registry's processes; docker-compose.yml runs one container per process.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY registry ./registry
COPY projections ./projections
COPY consumers ./consumers
COPY model_registry ./model_registry
COPY schemas ./schemas
RUN pip install --no-cache-dir '.[sklearn]'
USER nobody
ENTRYPOINT ["model-registry"]
