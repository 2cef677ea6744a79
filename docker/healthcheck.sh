#!/bin/sh
# HEALTHCHECK of a remote opencode-worker host: healthy when
#   1. the worker runs a real job (a session, the sandbox, /bin/sh) that prints a fresh marker,
#      with the same config as the sessions sshd starts, and
#   2. something listens on the SSH port (read from /proc/net/tcp*, so it costs no connection
#      and no line in sshd's log every interval).
# Same variables as entrypoint.sh: OPENCODE_WORKER_BIN, OPENCODE_WORKER_CONFIG,
# OPENCODE_WORKER_SSH_PORT.
set -eu

bin=${OPENCODE_WORKER_BIN:-/usr/local/bin/opencode-worker}
config=${OPENCODE_WORKER_CONFIG:-/etc/opencode-worker/worker.json}
port=${OPENCODE_WORKER_SSH_PORT:-2222}

marker="healthy-$$-$(date +%s)"
# The job's summary line goes to stderr, which Docker keeps in the health log.
if ! out=$("$bin" --config "$config" run --timeout 20s --network none -c "echo $marker"); then
	echo "unhealthy: the job failed (see above)"
	exit 1
fi
if [ "$out" != "$marker" ]; then
	echo "unhealthy: the job printed '$out', expected '$marker'"
	exit 1
fi

# /proc/net/tcp lists "sl local_address rem_address st ...": local port in hex, st 0A = LISTEN.
hex=$(printf ':%04X' "$port")
tables=
for table in /proc/net/tcp /proc/net/tcp6; do
	if [ -r "$table" ]; then
		tables="$tables $table"
	fi
done
# shellcheck disable=SC2086 # $tables is a list of paths without blanks
if [ -z "$tables" ] || ! awk -v port="$hex" \
	'substr($2, length($2) - 4) == port && $4 == "0A" { found = 1 } END { exit !found }' $tables; then
	echo "unhealthy: nothing listens on port $port"
	exit 1
fi
echo "healthy: job printed $marker, port $port listening"
