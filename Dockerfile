FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY config ./config
RUN pip install . && useradd --create-home --uid 10001 gateway

USER gateway
EXPOSE 6666
# Inside a container the gateway must listen beyond loopback; publish the port to 127.0.0.1 only
# (docker run -p 127.0.0.1:6666:6666 ...) unless the network in front of it is trusted.
ENTRYPOINT ["fmz-gateway", "serve", "--config", "config/gateway.yaml", "--host", "0.0.0.0"]
