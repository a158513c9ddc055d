FROM scratch
RUN echo no
EXPOSE 8080
USER app
VOLUME /data
HEALTHCHECK CMD ["/hello.wasm"]
SHELL ["/bin/sh", "-c"]
ADD hello.wasm /
STOPSIGNAL SIGTERM
ONBUILD COPY . /
