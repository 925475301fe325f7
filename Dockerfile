# The control-plane image: one image, the service chosen by the command (api, reconciler, dns-worker).
# Multi-stage: wheels are built with compilers in the first stage; the runtime stage has only Python and the
# installed project, and runs as an unprivileged user (UID/GID 65532 by default, as DockFlare's images do).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY libs ./libs
COPY services ./services
RUN pip wheel --no-cache-dir -c constraints.txt --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
ARG UID=65532
ARG GID=65532
RUN groupadd --gid "${GID}" flareport && useradd --uid "${UID}" --gid "${GID}" --no-create-home --shell /usr/sbin/nologin flareport
# The API's state directory (a generated admin password, mode 0600); a named volume mounted here starts with this
# owner and mode.
RUN install -d -m 0700 -o "${UID}" -g "${GID}" /var/lib/flareport
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
ENV PYTHONUNBUFFERED=1 LOG_FORMAT=json
USER ${UID}:${GID}
EXPOSE 8080 9101 9102
ENTRYPOINT ["flareport"]
CMD ["--help"]
