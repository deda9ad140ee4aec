# Shirushi: the backend and responder in one image.
#   docker build -t shirushi .
#   docker run --rm -v shirushi:/var/lib/shirushi shirushi init
#   docker run -d -p 8080:8080 -p 8081:8081 -v shirushi:/var/lib/shirushi shirushi
# For production set SHIRUSHI_OCSP__URL / SHIRUSHI_REPOSITORY__URL to the public URLs, use
# ca.key_backend = "pkcs11" with the HSM's module mounted in, and an external Redis/PostgreSQL.
# The RA/admin API listens on the container's loopback only: publish it through a TLS proxy
# (set SHIRUSHI_API__LISTEN=0.0.0.0:8082 behind one), never as plain HTTP on a public address.

FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir build && python -m build --wheel --outdir /wheels

FROM python:3.11-slim-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends redis-server softhsm2 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home-dir /var/lib/shirushi --create-home shirushi
COPY --from=build /wheels /wheels
# The whole CA (backend extra) plus the PostgreSQL driver; a responder-only image needs neither.
RUN pip install --no-cache-dir "$(ls /wheels/shirushi-*.whl)[backend,postgres]" && rm -rf /wheels
USER shirushi
WORKDIR /var/lib/shirushi
ENV SHIRUSHI_DATA_DIR=/var/lib/shirushi \
    SHIRUSHI_OCSP__LISTEN=0.0.0.0:8080 \
    SHIRUSHI_REPOSITORY__LISTEN=0.0.0.0:8081 \
    SHIRUSHI_API__LISTEN=127.0.0.1:8082 \
    PYTHONUNBUFFERED=1
VOLUME ["/var/lib/shirushi"]
EXPOSE 8080 8081
STOPSIGNAL SIGTERM
ENTRYPOINT ["shirushi"]
CMD ["serve"]
