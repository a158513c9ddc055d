FROM scratch
COPY *.wasm /
COPY static/[a-z]*.htm? /www/
COPY static/c[!x]s/*.css /www/css/
ENV A=1 \
    B="two words" \
    C='single $A'
ENTRYPOINT ["/hello.wasm", "--flag"]
