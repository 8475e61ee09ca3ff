# A chorus node: `chorus serve` with its HTTP admin.
#
#   docker build -t chorus .
#   docker run --rm -e CHORUS_SECRET="$(chorus secret)" -e CHORUS_TOKEN=... \
#       -p 8400:8400 chorus
#
# The default command runs one node that founds a cluster of its own. For a cluster,
# pass `serve` options (see `chorus serve --help` and deploy/kubernetes/): every node
# listens on 0.0.0.0, gives `--advertise HOST:7400` (an address its peers can reach),
# `--join` the others and `--bootstrap-expect N`.

# -- builder: the wheel, from the sources only (see .dockerignore) -------------------
FROM python:3.11-slim AS builder
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY hlc/ hlc/
COPY crdt/ crdt/
COPY transport/ transport/
COPY flags/ flags/
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# -- runtime: the wheel and its dependencies, run as a user with no privileges --------
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN useradd --system --uid 10001 --user-group --no-create-home \
        --shell /usr/sbin/nologin chorus
COPY --from=builder /wheels /wheels
RUN python -m pip install --no-cache-dir /wheels/chorus_replicated-*.whl \
    && rm -rf /wheels
USER 10001:10001
# 7400: the cluster port (peers); 8400: the HTTP admin (probes, flags, metrics).
EXPOSE 7400 8400
# chorus serve drains on SIGTERM (writes handed to a peer, 5 s at most), then exits 0.
# ENTRYPOINT and CMD are in exec form, so chorus is PID 1 and gets the signal itself.
STOPSIGNAL SIGTERM
# Python's standard library only: the image needs no curl. Kubernetes ignores this
# and uses the pod's probes (deploy/kubernetes/chorus.yaml).
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8400/health', timeout=2)"]
ENTRYPOINT ["chorus"]
CMD ["serve", "--node-id", "chorus", "--listen", "0.0.0.0:7400", "--http", "0.0.0.0:8400"]
