# fmz-ccxt-gateway: a slim, non-root image running `fmz-gateway serve`.
#
# Base image: the multi-arch index of python:3.12.12-slim-bookworm, pinned by digest so a rebuild
# gets the same OS and Python bits (bump the tag and the digest together).
FROM python:3.12.12-slim-bookworm@sha256:593bd06efe90efa80dc4eee3948be7c0fde4134606dd40d8dd8dbcade98e669c

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN useradd --create-home --uid 10001 gateway
WORKDIR /app

# Dependencies first, from the lock (exact versions, sha256-checked): this layer is rebuilt only
# when requirements.lock changes, never for a change of the code.
COPY requirements.lock ./
RUN pip install --require-hashes --no-deps -r requirements.lock

# The code. Its build backend (setuptools) came from the lock: nothing else is downloaded here.
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY config ./config
RUN pip install --no-deps --no-build-isolation --no-index . && rm -rf build ./*.egg-info

# The config file; mount yours and point here, or -e FMZ_GATEWAY_CONFIG=... (a --config flag wins).
# FMZ_GATEWAY_LOG_LEVEL (debug | info | warning | error), when set, wins over server.log_level.
ENV FMZ_GATEWAY_CONFIG=/app/config/gateway.yaml
USER gateway
EXPOSE 6666
# Exits 0 while /healthz answers 200; 1 when it answers 503 (a route cannot serve) or nothing.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request\ntry:\n    sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:6666/healthz', timeout=4).status == 200 else 1)\nexcept Exception:\n    sys.exit(1)"]
# Inside a container the gateway must listen beyond loopback; publish the port to 127.0.0.1 only
# (docker run -p 127.0.0.1:6666:6666 ...) unless the network in front of it is trusted, and list
# the dockers' networks in server.allowed_clients. `docker run IMAGE check` validates a config.
ENTRYPOINT ["fmz-gateway"]
CMD ["serve", "--host", "0.0.0.0"]
