#!/bin/sh
# Container entrypoint of a remote opencode-worker host (run under tini, as the user `worker`):
#   1. generates the SSH host key on the first start (kept on the volume),
#   2. writes authorized_keys from the public keys given to it, each line prefixed with
#      command="<worker> serve",restrict (sshd_config's ForceCommand says the same: a key
#      that somehow lacked the prefix still gets the worker and nothing else),
#   3. renders sshd_config with this environment's paths and execs sshd in the foreground.
# With arguments, it runs them instead (`docker run IMAGE opencode-worker doctor`).
#
# Every path comes from the environment, so tests/docker_runtime.sh runs this same script
# with the same sshd_config outside a container:
#   OPENCODE_WORKER_STATE_DIR     state: host key, authorized_keys, rendered sshd_config,
#                                 sessions; also the user's home (/var/lib/opencode-worker)
#   OPENCODE_WORKER_SSHD_CONFIG   sshd_config template (/etc/opencode-worker/sshd_config)
#   OPENCODE_WORKER_CONFIG        the worker's config file (/etc/opencode-worker/worker.json)
#   OPENCODE_WORKER_BIN           the worker binary (/usr/local/bin/opencode-worker)
#   OPENCODE_WORKER_SSHD          the sshd binary (/usr/sbin/sshd)
#   OPENCODE_WORKER_SSH_PORT      listening port (2222)
#   OPENCODE_WORKER_SSH_LISTEN    listening address (all addresses when unset)
#   OPENCODE_WORKER_AUTHORIZED_KEYS_FILE  public keys, one per line, as in a .pub file
#                                 (/etc/opencode-worker/authorized_keys.pub; read when present)
#   OPENCODE_WORKER_AUTHORIZED_KEYS       the same, as the variable's value
# Keys from both are used; at least one is required.
set -eu

if [ "$#" -gt 0 ]; then
	exec "$@"
fi

# The defaults below are the values written in sshd_config; step 3 replaces them there.
default_state=/var/lib/opencode-worker
default_config=/etc/opencode-worker/worker.json
default_bin=/usr/local/bin/opencode-worker
default_port=2222

state_dir=${OPENCODE_WORKER_STATE_DIR:-$default_state}
sshd_template=${OPENCODE_WORKER_SSHD_CONFIG:-/etc/opencode-worker/sshd_config}
worker_config=${OPENCODE_WORKER_CONFIG:-$default_config}
worker_bin=${OPENCODE_WORKER_BIN:-$default_bin}
sshd_bin=${OPENCODE_WORKER_SSHD:-/usr/sbin/sshd}
port=${OPENCODE_WORKER_SSH_PORT:-$default_port}
listen=${OPENCODE_WORKER_SSH_LISTEN:-}
keys_file=${OPENCODE_WORKER_AUTHORIZED_KEYS_FILE:-/etc/opencode-worker/authorized_keys.pub}
keys_file_required=${OPENCODE_WORKER_AUTHORIZED_KEYS_FILE:+yes}

log() { printf 'entrypoint: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

uid=$(id -u)
[ "$uid" != 0 ] || die "refusing to run as root: sshd here runs as the one unprivileged user it \
serves (the image's USER worker); run the container without --user root"

# The paths end up in sshd_config and in a command="..." option: keep them to characters
# that need no quoting there (and no escaping in sed below).
for path in "$state_dir" "$sshd_template" "$worker_config" "$worker_bin" "$sshd_bin"; do
	case $path in
	/*) ;;
	*) die "$path: paths must be absolute" ;;
	esac
	case $path in
	*[!A-Za-z0-9._/+-]*) die "$path: only letters, digits and . _ / + - are allowed in paths" ;;
	esac
done
case $port in
'' | *[!0-9]*) die "OPENCODE_WORKER_SSH_PORT=$port is not a port number" ;;
esac
if [ "$port" -lt 1024 ] || [ "$port" -gt 65535 ]; then
	die "OPENCODE_WORKER_SSH_PORT=$port: an unprivileged sshd needs a port in 1024-65535"
fi
[ -f "$sshd_template" ] || die "$sshd_template: no sshd_config template"
[ -f "$worker_config" ] || die "$worker_config: no worker config"
[ -x "$worker_bin" ] || die "$worker_bin: not an executable"

umask 077
ssh_dir=$state_dir/.ssh
mkdir -p "$ssh_dir" 2>/dev/null || die "cannot create $ssh_dir as uid $uid: the state dir must \
be writable by this user (a named volume takes the image's ownership; chown a bind mount to uid $uid)"
if [ ! -O "$state_dir" ] || [ ! -w "$state_dir" ]; then
	die "$state_dir must be owned and writable by uid $uid (sshd's StrictModes checks it)"
fi
chmod 700 "$ssh_dir"

# 1. Host key.
host_key=$ssh_dir/ssh_host_ed25519_key
if [ ! -s "$host_key" ]; then
	rm -f "$host_key" "$host_key.pub"
	ssh-keygen -q -t ed25519 -N '' -C "opencode-worker host key" -f "$host_key"
	log "generated the host key $host_key"
fi
log "host key $(ssh-keygen -l -f "$host_key.pub")"
log "known_hosts line: [HOST]:$port $(cut -d' ' -f1,2 "$host_key.pub")"

# 2. authorized_keys. Bare public keys only: a line that starts with anything but a key type
# carries options (from=, command=, environment=, permitopen=, ...) and is refused, since
# they could only loosen what the prefix below grants.
forced="$worker_bin --config $worker_config serve"
keys_tmp=$ssh_dir/authorized_keys.new
: >"$keys_tmp"
count=0

add_keys() { # $1: where the keys come from (for messages); stdin: the keys
	n=0
	while IFS= read -r line || [ -n "$line" ]; do
		n=$((n + 1))
		line=$(printf '%s' "$line" | tr -d '\r')
		line=${line#"${line%%[![:space:]]*}"}
		case $line in
		'' | '#'*) continue ;;
		esac
		type=${line%%[[:space:]]*}
		case $type in
		ssh-ed25519 | ssh-rsa | ecdsa-sha2-nistp256 | ecdsa-sha2-nistp384 | ecdsa-sha2-nistp521 | \
			sk-ssh-ed25519@openssh.com | sk-ecdsa-sha2-nistp256@openssh.com) ;;
		*)
			rm -f "$keys_tmp"
			die "$1 line $n starts with '$type', not a key type: give bare public keys \
(as in id_ed25519.pub); options are refused, this script adds command=\"...\",restrict itself"
			;;
		esac
		if ! fingerprint=$(printf '%s\n' "$line" | ssh-keygen -l -f /dev/stdin 2>/dev/null); then
			rm -f "$keys_tmp"
			die "$1 line $n is not a valid $type public key"
		fi
		printf 'command="%s",restrict %s\n' "$forced" "$line" >>"$keys_tmp"
		count=$((count + 1))
		log "authorized key $fingerprint ($1 line $n)"
	done
}

if [ -d "$keys_file" ]; then
	rm -f "$keys_tmp"
	die "$keys_file is a directory, not a file of public keys (docker makes one when the host \
path of a bind mount does not exist)"
elif [ -f "$keys_file" ]; then
	# shellcheck disable=SC2094 # the first argument only names the source in messages
	add_keys "$keys_file" <"$keys_file"
elif [ -n "$keys_file_required" ]; then
	rm -f "$keys_tmp"
	die "OPENCODE_WORKER_AUTHORIZED_KEYS_FILE=$keys_file: no such file"
fi
if [ -n "${OPENCODE_WORKER_AUTHORIZED_KEYS:-}" ]; then
	add_keys OPENCODE_WORKER_AUTHORIZED_KEYS <<EOF
$OPENCODE_WORKER_AUTHORIZED_KEYS
EOF
fi
if [ "$count" -eq 0 ]; then
	rm -f "$keys_tmp"
	die "no authorized keys: mount public keys at $keys_file or set OPENCODE_WORKER_AUTHORIZED_KEYS"
fi
mv -f "$keys_tmp" "$ssh_dir/authorized_keys"

# 3. sshd_config with this environment's paths, then sshd in the foreground, logging to
# stderr (-e): `docker logs` shows every connection and the fingerprint of the key used.
sshd_config=$ssh_dir/sshd_config
{
	printf '# Rendered by entrypoint.sh from %s at every start; edit that file.\n' "$sshd_template"
	sed -e "s|$default_config|$worker_config|g" \
		-e "s|$default_bin|$worker_bin|g" \
		-e "s|$default_state|$state_dir|g" \
		-e "s|^Port $default_port\$|Port $port|" \
		"$sshd_template"
} >"$sshd_config"

set -- -D -e -f "$sshd_config"
if [ -n "$listen" ]; then
	set -- "$@" -o "ListenAddress=$listen"
fi
log "starting $sshd_bin on port $port as uid $uid ($count authorized keys)"
exec "$sshd_bin" "$@"
