# rabbitmq-dev.sh - sourced by dev-stack.sh: RabbitMQ over TLS and one broker user per
# identity, for development and CI (docs/bus.md "Production setup" shows the real thing).
#
# The broker is the machine's one, shared by every clone's dev stack, so what it needs
# lives with it, in RMQ_DIR (default /var/lib/rabbitmq/edgeback-dev), not in a clone's
# var/: a per-clone CA would make each clone restart the broker with its own
# certificate and break the others' TLS. RMQ_DIR holds
#   ca.pem ca.key          the dev CA (self-signed, 10 years)
#   server.pem server.key  127.0.0.1 / localhost, signed by the CA
#   conf.d/50-edgeback-tls.conf  the TLS listener on 127.0.0.1:5671
#   users/<name>           the password of each broker user the dev stack made (0600)
# The broker reads conf.d through RABBITMQ_CONFIG_FILES, beside /etc/rabbitmq/rabbitmq.conf,
# so the machine's own settings (the plain listener on 5672) stay as they are.

RMQ_DIR=${EDGEBACK_RABBITMQ_DIR:-/var/lib/rabbitmq/edgeback-dev}
AMQPS_PORT=${EDGEBACK_AMQPS_PORT:-5671}
RMQ_VHOST=/
# the services of edgeback, each its own broker user (hosts: `broker-user host-<id> host`)
RMQ_SERVICE_USERS="api scheduler catalog dedup edgeback-test"

rabbitmq_tls_material() {
    local d=$RMQ_DIR
    mkdir -p "$d/conf.d" "$d/users"
    chmod 755 "$d"
    chmod 700 "$d/users"
    if [ ! -s "$d/ca.pem" ] || [ ! -s "$d/ca.key" ]; then
        log "rabbitmq: making the dev CA in $d"
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=edgeback dev CA" \
            -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
            -keyout "$d/ca.key" -out "$d/ca.pem" 2>/dev/null
        rm -f "$d/server.pem"
    fi
    if [ ! -s "$d/server.pem" ] || [ ! -s "$d/server.key" ]; then
        log "rabbitmq: making the server certificate (127.0.0.1, localhost)"
        openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
            -keyout "$d/server.key" -out "$d/server.csr" 2>/dev/null
        openssl x509 -req -days 825 -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" \
            -CAcreateserial -out "$d/server.pem" -extfile <(printf '%s\n' \
                "subjectAltName=IP:127.0.0.1,DNS:localhost" "extendedKeyUsage=serverAuth" \
                "basicConstraints=CA:FALSE") 2>/dev/null
        rm -f "$d/server.csr"
    fi
    chmod 600 "$d/ca.key"
    chown rabbitmq:rabbitmq "$d/server.key" && chmod 600 "$d/server.key"
    cat >"$d/conf.d/50-edgeback-tls.conf" <<EOF
# written by edgeback's deploy/dev-stack.sh: AMQP over TLS (dev CA in $d)
listeners.ssl.default = 127.0.0.1:$AMQPS_PORT
ssl_options.cacertfile = $d/ca.pem
ssl_options.certfile = $d/server.pem
ssl_options.keyfile = $d/server.key
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
EOF
}

# a TLS handshake verified against the dev CA, then the AMQP header: the broker answers
amqps_ping() {
    local first # (pipefail: openssl dies of SIGPIPE once head has its byte)
    first=$(printf 'AMQP\0\0\11\1' | timeout 5 openssl s_client -quiet -ign_eof \
        -verify_return_error -CAfile "$RMQ_DIR/ca.pem" -verify_ip 127.0.0.1 \
        -connect "127.0.0.1:$AMQPS_PORT" 2>/dev/null | head -c 1 | od -An -tx1) || true
    [[ $first == *01* ]]
}

rabbitmq_start() {
    log "rabbitmq: starting rabbitmq-server -detached (TLS config $RMQ_DIR/conf.d)"
    RABBITMQ_CONFIG_FILES="$RMQ_DIR/conf.d/*.conf" rabbitmq-server -detached
}

# the broker answers AMQP but not TLS with our CA: restart it once with the TLS config
rabbitmq_restart_for_tls() {
    log "rabbitmq: no TLS listener with the dev CA on $AMQPS_PORT: restarting the broker once"
    rabbitmqctl -q stop || true
    wait_for 60 "RabbitMQ to stop" bash -c '! rabbitmqctl -q ping'
    rabbitmq_start
}

rabbitmq_password() { # rabbitmq_password NAME: the stored password, made on first use
    local file=$RMQ_DIR/users/$1
    if [ ! -s "$file" ]; then
        (umask 077 && openssl rand -hex 16 >"$file")
    fi
    cat "$file"
}

# rabbitmq_host_permissions USER HOST_ID PREFIX: PREFIX is the Topology prefix (tests
# namespace every name with one, e.g. "t-1234."; production has none). Topic
# permissions name one exchange exactly, so a host user serves one prefix.
rabbitmq_host_permissions() {
    local user=$1 h=$2 p=${3//./\\.} q
    # its run queue (with DLQ and delay queues), the RPCs it serves, the workers' ping
    q="^$p(worker\\.runs\\.$h(\\.dlq|\\.retry\\.[0-9]+ms)?|rpc\\.worker\\.$h\\..+|rpc\\.health\\.ping\\.worker)\$"
    rabbitmqctl -q set_permissions -p "$RMQ_VHOST" "$user" "$q" \
        "$q|^amq\\.default\$|^${p}edgeback\\.(events|commands)\$" "$q|^${p}edgeback\\.commands\$"
    # routing keys: it publishes host, run, restore and backup events (the catalog keeps
    # a run or restore event only from its own host: Gate.run_event / restore_event) and
    # its own runs' and restores' VM tasks;
    # it binds only its own runs / dead letters
    rabbitmqctl -q set_topic_permissions -p "$RMQ_VHOST" "$user" "${3}edgeback.events" \
        "^(host|run|restore|backup)\\.event\\.[a-z_]+\$|^[a-z]+\\.[a-z]+\\.$h(\\..*)?\$" '^$'
    rabbitmqctl -q set_topic_permissions -p "$RMQ_VHOST" "$user" "${3}edgeback.commands" \
        "^run\\.$h\$" "^run\\.$h\$"
}

# broker_user NAME ROLE [PREFIX]: create or update a broker user; ROLE service | host
# (host users are named host-<host id>); prints its amqps URL
broker_user() {
    local name=$1 role=$2 prefix=${3:-} password
    [[ "$prefix" =~ ^([A-Za-z0-9_-]+\.)?$ ]] || die "prefix: one word and a dot, or nothing"
    [[ "$name" =~ ^[A-Za-z0-9_-]+$ ]] || die "broker user name: letters, digits, - and _ only"
    password=$(rabbitmq_password "$name")
    if rabbitmqctl -q list_users | awk '{print $1}' | grep -qx -- "$name"; then
        rabbitmqctl -q change_password "$name" "$password" >/dev/null
    else
        rabbitmqctl -q add_user "$name" "$password" >/dev/null
    fi
    rabbitmqctl -q clear_topic_permissions -p "$RMQ_VHOST" "$name" >/dev/null 2>&1 || true
    case $role in
    service) rabbitmqctl -q set_permissions -p "$RMQ_VHOST" "$name" '.*' '.*' '.*' ;;
    host)
        [[ "$name" == host-?* ]] || die "a host's broker user is named host-<host id>"
        rabbitmq_host_permissions "$name" "${name#host-}" "$prefix"
        ;;
    *) die "role must be service or host, not '$role'" ;;
    esac
    amqps_url "$name"
}

drop_broker_user() {
    rabbitmqctl -q delete_user "$1" >/dev/null 2>&1 || true
    rm -f "$RMQ_DIR/users/$1"
}

# the URL names the CA too (aiormq reads ?cafile=), so any client of it verifies the broker
amqps_url() { echo "amqps://$1:$(rabbitmq_password "$1")@127.0.0.1:$AMQPS_PORT/?cafile=$RMQ_DIR/ca.pem"; }

# the service users; one listing when they all exist already (each rabbitmqctl call
# costs about a second)
rabbitmq_users() {
    local u existing
    existing=$(rabbitmqctl -q list_users | awk '{print $1}')
    for u in $RMQ_SERVICE_USERS; do
        if [ -s "$RMQ_DIR/users/$u" ] && grep -qx -- "$u" <<<"$existing"; then continue; fi
        log "rabbitmq: broker user $u"
        broker_user "$u" service >/dev/null
    done
}
