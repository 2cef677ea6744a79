#!/usr/bin/env bash
# The Docker image's runtime setup, tested outside a container (no Docker engine runs on our
# machines or CI, so the image itself cannot be built here).
#
# Runs the real docker/entrypoint.sh with the real docker/sshd_config, docker/worker.json and
# docker/healthcheck.sh (copies, byte for byte; only the paths the entrypoint takes from the
# environment differ), as a throwaway unprivileged user whose home is the state dir, as the
# image's `worker` is; the worker is target/release/opencode-worker. Then it proves with the
# system OpenSSH client, as the sidecar connects (BatchMode, strict host key checking):
#   a. JSON-RPC initialize and a real job work through ssh, and the worker runs as that user;
#      a job cannot read the host key (the sandbox hides ~/.ssh);
#   b. asking for another command (cat /etc/passwd, a shell, the sftp subsystem) never gets it;
#   c. port forwarding (-L, -R) and a tty are refused;
#   d. a key that is not authorized is refused, and so is the authorized key for another user;
#   e. sshd runs as the unprivileged user, with no capability;
#   f. docker/healthcheck.sh passes (and fails when nothing listens);
#   g. the entrypoint refuses key lines that carry options, and refuses to run as root;
#   h. both locks are in place: every authorized_keys line has command="...",restrict, the
#      rendered sshd_config is the template with only the paths changed, and a key without
#      the prefix still gets the worker (sshd's ForceCommand alone).
# Needs root (it creates the user), sshd (openssh-server), ssh (openssh-client), setpriv,
# python3. Removes every process, the user and every file it made, also on failure.
# Usage: tests/docker_runtime.sh   (after cargo build --release)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

bin_src=${OPENCODE_WORKER_BIN_UNDER_TEST:-$repo/target/release/opencode-worker}
sshd_bin=/usr/sbin/sshd

if [ "$(id -u)" != 0 ]; then
	echo "docker_runtime: SKIPPED: needs root to create a throwaway user"
	exit 0
fi
for tool in "$sshd_bin" ssh ssh-keygen setpriv useradd userdel python3 timeout; do
	command -v "$tool" >/dev/null || {
		echo "docker_runtime: missing $tool (apt-get install openssh-server openssh-client util-linux passwd python3)" >&2
		exit 1
	}
done
[ -x "$bin_src" ] || {
	echo "docker_runtime: $bin_src missing: run cargo build --release first" >&2
	exit 1
}

passed=0
failed=0
ok() {
	passed=$((passed + 1))
	printf 'ok   %s\n' "$*"
}
not_ok() {
	failed=$((failed + 1))
	printf 'FAIL %s\n' "$*"
}
# check DESCRIPTION COMMAND...: the command's success is the check's.
check() {
	local what=$1
	shift
	if "$@"; then ok "$what"; else not_ok "$what"; fi
}
die() {
	printf 'docker_runtime: %s\n' "$*" >&2
	if [ -n "${tmp:-}" ] && [ -f "$tmp/sshd.log" ]; then
		echo "--- sshd log" >&2
		grep -v '^{' "$tmp/sshd.log" | tail -40 >&2 || true
	fi
	exit 1
}

user="ocw-docker-$$"
user_made=
uid=
started=()
tmp=$(mktemp -d /tmp/ocw-docker-runtime.XXXXXX)

# Processes running as the throwaway user: all of them were started by this test (sshd, its
# per-connection children, workers, jobs), since the user exists only for it.
pids_of_user() {
	local f key real rest
	for f in /proc/[0-9]*/status; do
		while read -r key real rest; do
			if [ "$key" = "Uid:" ]; then
				[ "$real" = "$uid" ] && { f=${f#/proc/}; echo "${f%/status}"; }
				break
			fi
		done 2>/dev/null <"$f" || true
	done
}

# runs_as_user PID: the process's real, effective, saved and filesystem uids are the user's.
runs_as_user() {
	awk -v u="$uid" '$1 == "Uid:" { ok = ($2 == u && $3 == u && $4 == u && $5 == u) } END { exit !ok }' \
		"/proc/$1/status"
}

cleanup() {
	local status=$? pid attempt left
	set +e
	for pid in "${started[@]}"; do
		kill "$pid" 2>/dev/null
	done
	for pid in "${started[@]}"; do
		wait "$pid" 2>/dev/null
	done
	if [ -n "$uid" ]; then
		for attempt in 1 2 3 4 5 6 7 8 9 10; do
			left=$(pids_of_user)
			[ -z "$left" ] && break
			# shellcheck disable=SC2086 # a list of pids
			if [ "$attempt" -lt 5 ]; then kill -TERM $left 2>/dev/null; else kill -KILL $left 2>/dev/null; fi
			sleep 0.2
		done
		[ -z "$(pids_of_user)" ] || echo "docker_runtime: processes of $user still running: $(pids_of_user)" >&2
	fi
	if [ -n "$user_made" ]; then
		userdel "$user" 2>/dev/null || echo "docker_runtime: userdel $user failed" >&2
		getent group "$user" >/dev/null && groupdel "$user"
	fi
	rm -rf "$tmp"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Layout: root-owned, world-readable copies of what the image puts in /usr/local/bin and
# /etc/opencode-worker (the repo may sit where the user cannot enter, such as /root); the
# state dir (the image's volume) owned by the user and its home; the client's keys root-only.
chmod 755 "$tmp"
bindir=$tmp/bin etc=$tmp/etc state=$tmp/state client=$tmp/client
mkdir -m 755 "$bindir" "$etc"
mkdir -m 700 "$client"
install -m 755 "$bin_src" "$bindir/opencode-worker"
install -m 755 docker/entrypoint.sh "$bindir/entrypoint.sh"
install -m 755 docker/healthcheck.sh "$bindir/healthcheck.sh"
install -m 644 docker/sshd_config "$etc/sshd_config"
# The worker config with the state dir moved, as entrypoint.sh moves it in sshd_config.
sed "s|/var/lib/opencode-worker|$state|g" docker/worker.json >"$etc/worker.json"
chmod 644 "$etc/worker.json"

# As the Dockerfile makes `worker`: a system user with /bin/sh (sshd runs the forced command
# through the login shell) and the password field `*` (no password, yet not "locked", which
# sshd without PAM would refuse).
useradd --system --user-group --home-dir "$state" --no-create-home --shell /bin/sh \
	--password '*' "$user"
user_made=yes
uid=$(id -u "$user")
mkdir -m 700 "$state"
chown "$user:$user" "$state"

ssh-keygen -q -t ed25519 -N '' -C docker-runtime-client -f "$client/id"
ssh-keygen -q -t ed25519 -N '' -C docker-runtime-stranger -f "$client/stranger"
ssh-keygen -q -t ed25519 -N '' -C docker-runtime-bare -f "$client/bare"
printf '# the sidecar\n%s\n' "$(cat "$client/id.pub")" >"$etc/authorized_keys.pub"
chmod 644 "$etc/authorized_keys.pub"

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# A container-like environment with the entrypoint's variables (set_user_env, once the port
# is chosen); as_user runs a command in it, as_user_setpriv also as the user.
user_env=()
set_user_env() {
	user_env=(env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
		HOME="$state" USER="$user" LOGNAME="$user"
		OPENCODE_WORKER_STATE_DIR="$state"
		OPENCODE_WORKER_SSHD_CONFIG="$etc/sshd_config"
		OPENCODE_WORKER_CONFIG="$etc/worker.json"
		OPENCODE_WORKER_BIN="$bindir/opencode-worker"
		OPENCODE_WORKER_SSH_PORT="$port"
		OPENCODE_WORKER_SSH_LISTEN=127.0.0.1
		OPENCODE_WORKER_AUTHORIZED_KEYS_FILE="$etc/authorized_keys.pub")
}
setpriv_user=(setpriv --reuid="$user" --regid="$user" --init-groups --)
as_user() { "${user_env[@]}" "$@"; }
as_user_setpriv() { "${user_env[@]}" "${setpriv_user[@]}" "$@"; }

# Start the entrypoint (it execs sshd, so its pid is sshd's); a port taken in between is
# retried with another.
sshd_pid=
for attempt in 1 2 3; do
	port=$(free_port)
	set_user_env
	# Not through a function, so that $! is the pid env, setpriv, the entrypoint and sshd
	# each exec into.
	"${user_env[@]}" "${setpriv_user[@]}" "$bindir/entrypoint.sh" >"$tmp/sshd.log" 2>&1 &
	sshd_pid=$!
	started+=("$sshd_pid")
	for _ in $(seq 100); do
		grep -q "Server listening on 127.0.0.1 port $port" "$tmp/sshd.log" && break
		kill -0 "$sshd_pid" 2>/dev/null || break
		sleep 0.1
	done
	grep -q "Server listening on 127.0.0.1 port $port" "$tmp/sshd.log" && break
	kill "$sshd_pid" 2>/dev/null || true
	wait "$sshd_pid" 2>/dev/null || true
	sshd_pid=
	grep -q "Address already in use" "$tmp/sshd.log" || break
done
[ -n "$sshd_pid" ] || die "sshd did not start"
echo "docker_runtime: sshd (pid $sshd_pid) as $user (uid $uid) on 127.0.0.1:$port"

# The known_hosts line is the one the entrypoint logs for operators.
known=$(sed -n 's/^entrypoint: known_hosts line: \[HOST\]:[0-9]* //p' "$tmp/sshd.log")
[ -n "$known" ] || die "the entrypoint logged no known_hosts line"
printf '[127.0.0.1]:%s %s\n' "$port" "$known" >"$client/known_hosts"

ssh_base=(timeout 30 ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=yes
	-o UserKnownHostsFile="$client/known_hosts" -o GlobalKnownHostsFile=/dev/null
	-o IdentitiesOnly=yes -o IdentityAgent=none -o UpdateHostKeys=no -o ConnectTimeout=10
	-p "$port")
target="$user@127.0.0.1"
init='{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"client":{"name":"docker_runtime.sh","version":"1"}}}'

# py EXPR: evaluates EXPR with `r` the JSON read from stdin; fails on a false result.
py() {
	python3 -c '
import json, sys
r = json.loads(sys.stdin.readline())
value = eval(sys.argv[1])
if value is False or value is None:
    sys.exit(1)
if value is not True:
    print(value)
' "$1"
}
is_worker_reply() { py 'r["result"]["name"] == "opencode-worker" and r["result"]["protocol"] == 1'; }

echo "--- a. JSON-RPC through ssh"
coproc RPC { exec "${ssh_base[@]}" -T -i "$client/id" "$target" opencode-worker serve 2>"$tmp/rpc.err"; }
# shellcheck disable=SC2153 # RPC_PID is set by coproc
rpc_pid=$RPC_PID
started+=("$rpc_pid")
# Bash closes a coprocess's own descriptors in subshells such as $(recv): use copies.
exec {rpc_in}>&"${RPC[1]}" {rpc_out}<&"${RPC[0]}"
eval "exec ${RPC[1]}>&- ${RPC[0]}<&-"
send() { printf '%s\n' "$1" >&"$rpc_in"; }
recv() {
	local line
	IFS= read -r -t 60 line <&"$rpc_out" || return 1
	printf '%s\n' "$line"
}
send "$init"
reply=$(recv) || die "no reply to initialize: $(cat "$tmp/rpc.err")"
check "initialize answers through ssh" is_worker_reply <<<"$reply"
fs_layer=$(py '[l["state"] for l in r["result"]["isolation"]["layers"] if l["name"] == "filesystem"][0]' <<<"$reply" || echo none)

worker_pid=
for pid in $(pids_of_user); do
	[ "$(cat "/proc/$pid/comm" 2>/dev/null)" = opencode-worker ] && worker_pid=$pid
done
if [ -n "$worker_pid" ]; then
	check "the worker of the session runs as $user (uid $uid)" \
		runs_as_user "$worker_pid"
else
	not_ok "the worker of the session runs as $user: no opencode-worker process of uid $uid"
fi

send '{"jsonrpc":"2.0","id":2,"method":"worker_dispatch_job","params":{"command":"echo hi","wait_ms":10000}}'
reply=$(recv) || die "no reply to worker_dispatch_job"
check "a real job runs through ssh (echo hi: finished, exit 0, stdout hi)" \
	py 'r["result"]["status"] == "finished" and r["result"]["exit_code"] == 0 and r["result"]["stdout"] == "hi\n"' <<<"$reply"

send "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"worker_dispatch_job\",\"params\":{\"command\":\"cat $state/.ssh/ssh_host_ed25519_key\",\"wait_ms\":10000}}"
reply=$(recv) || die "no reply to worker_dispatch_job"
if [ "$fs_layer" = active ]; then
	check "a job cannot read the host private key (~/.ssh is hidden from jobs)" \
		py 'r["result"]["exit_code"] != 0 and "PRIVATE KEY" not in r["result"].get("stdout", "")' <<<"$reply"
else
	echo "skip a job cannot read the host private key: filesystem layer is '$fs_layer' on this host"
fi

send '{"jsonrpc":"2.0","id":4,"method":"shutdown","params":{}}'
reply=$(recv) || die "no reply to shutdown"
check "shutdown answers" py 'r["id"] == 4 and r["result"] == {}' <<<"$reply"
exec {rpc_in}>&- {rpc_out}<&-
rpc_status=0
wait "$rpc_pid" || rpc_status=$?
check "the ssh session ends cleanly (exit $rpc_status)" test "$rpc_status" = 0

echo "--- b. no other command"
# rpc_with ARGS...: ssh with the authorized key, initialize on stdin; prints the first line.
rpc_with() {
	{ printf '%s\n' "$init" | "${ssh_base[@]}" -i "$client/id" "$@" 2>>"$tmp/ssh.err" | head -n 1; } || true
}
out=$(rpc_with -T "$target" cat /etc/passwd)
check "'ssh ... cat /etc/passwd' gets the worker" is_worker_reply <<<"$out"
check "'ssh ... cat /etc/passwd' prints no passwd line" test -z "$(grep -F 'root:x:0:0' <<<"$out")"
out=$(rpc_with -T "$target" /bin/sh -c 'echo pwned')
check "'ssh ... /bin/sh -c ...' gets the worker" is_worker_reply <<<"$out"
out=$(rpc_with -T "$target")
check "'ssh' without a command (a login shell) gets the worker" is_worker_reply <<<"$out"
out=$(rpc_with -T -s "$target" sftp)
check "the sftp subsystem is refused" grep -q "subsystem request failed" "$tmp/ssh.err"
check "the sftp subsystem serves nothing" test -z "$out"

echo "--- c. no forwarding, no tty"
lport=$(free_port)
"${ssh_base[@]}" -T -N -i "$client/id" -L "127.0.0.1:$lport:127.0.0.1:$port" "$target" \
	</dev/null 2>"$tmp/fwd.err" &
fwd_pid=$!
started+=("$fwd_pid")
banner=
for _ in $(seq 50); do
	if { exec {probe}<>"/dev/tcp/127.0.0.1/$lport"; } 2>/dev/null; then
		# Through a working tunnel this would read sshd's "SSH-2.0-OpenSSH" banner.
		IFS= read -r -t 5 banner <&"$probe" || true
		exec {probe}<&-
		break
	fi
	sleep 0.1
done
for _ in $(seq 50); do
	grep -q "administratively prohibited" "$tmp/fwd.err" && break
	sleep 0.1
done
kill "$fwd_pid" 2>/dev/null || true
wait "$fwd_pid" 2>/dev/null || true
check "local forwarding (-L) carries nothing" test -z "$banner"
check "local forwarding (-L) is refused by sshd" grep -q "administratively prohibited" "$tmp/fwd.err"
status=0
"${ssh_base[@]}" -T -N -o ExitOnForwardFailure=yes -i "$client/id" -R "0:127.0.0.1:$port" "$target" \
	</dev/null 2>"$tmp/rfwd.err" || status=$?
check "remote forwarding (-R) is refused" grep -q "remote port forwarding failed" "$tmp/rfwd.err"
check "remote forwarding (-R) ends the client (exit $status)" test "$status" != 0
: >"$tmp/ssh.err"
status=0
printf '%s\n' "$init" | "${ssh_base[@]}" -tt -i "$client/id" "$target" >"$tmp/out" 2>"$tmp/ssh.err" || status=$?
check "a tty (-tt) is refused" grep -q "PTY allocation request failed" "$tmp/ssh.err"
# The client gives up on an explicitly requested tty it cannot have: nothing runs.
check "with -tt the client gives up (exit $status) and nothing runs" test "$status" = 255 -a ! -s "$tmp/out"

echo "--- d. only the authorized key, only for this user"
status=0
printf '%s\n' "$init" | "${ssh_base[@]}" -T -i "$client/stranger" "$target" >"$tmp/out" 2>"$tmp/err" || status=$?
check "a key that is not authorized is refused (exit $status)" test "$status" = 255
check "a key that is not authorized gets 'Permission denied (publickey)'" grep -q "Permission denied (publickey)" "$tmp/err"
check "a key that is not authorized gets no output" test ! -s "$tmp/out"
status=0
printf '%s\n' "$init" | "${ssh_base[@]}" -T -i "$client/id" "root@127.0.0.1" >"$tmp/out" 2>"$tmp/err" || status=$?
check "the authorized key is refused for root (exit $status)" test "$status" = 255 -a ! -s "$tmp/out"

echo "--- e. sshd is not root"
check "sshd (pid $sshd_pid) is still the process the entrypoint exec'd" \
	test "$(cat "/proc/$sshd_pid/comm" 2>/dev/null)" = sshd
check "sshd runs as $user: real, effective, saved and fs uid $uid" \
	runs_as_user "$sshd_pid"
check "sshd holds no capability" grep -qE '^CapEff:[[:space:]]+0+$' "/proc/$sshd_pid/status"

echo "--- f. healthcheck"
status=0
as_user_setpriv "$bindir/healthcheck.sh" >"$tmp/health.out" 2>"$tmp/health.err" || status=$?
check "docker/healthcheck.sh passes (exit $status: $(tail -n 1 "$tmp/health.out"))" \
	grep -q '^healthy: ' "$tmp/health.out"
unused=$(free_port)
status=0
as_user_setpriv env OPENCODE_WORKER_SSH_PORT="$unused" "$bindir/healthcheck.sh" >"$tmp/health.out" 2>&1 || status=$?
check "docker/healthcheck.sh fails when nothing listens on the port (exit $status)" \
	grep -q "nothing listens on port $unused" "$tmp/health.out"

echo "--- g. the entrypoint refuses keys with options, and root"
# refused MESSAGE: the last entrypoint run exited 1 (not by the timeout: sshd never started)
# and said MESSAGE.
refused() { [ "$status" = 1 ] && grep -q "$1" "$tmp/g.out"; }
mkdir -m 700 "$tmp/state2"
chown "$user:$user" "$tmp/state2"
bare=$(cut -d' ' -f1,2 "$client/id.pub")
for line in "command=\"/bin/sh\" $bare" "restrict $bare" "from=\"10.0.0.1\" $bare" \
	"no-pty,permitopen=\"127.0.0.1:22\" $bare" "environment=\"LD_PRELOAD=/tmp/x.so\" $bare"; do
	status=0
	as_user_setpriv env OPENCODE_WORKER_STATE_DIR="$tmp/state2" OPENCODE_WORKER_AUTHORIZED_KEYS_FILE= \
		OPENCODE_WORKER_AUTHORIZED_KEYS="$line" timeout 20 "$bindir/entrypoint.sh" >"$tmp/g.out" 2>&1 || status=$?
	check "refuses the key line '${line:0:40}...' (exit $status)" \
		refused "options are refused"
done
check "no authorized_keys was written for refused lines" test ! -e "$tmp/state2/.ssh/authorized_keys"
printf '%s\n' "$bare first" "no-agent-forwarding $bare second" >"$tmp/keys-with-options.pub"
chmod 644 "$tmp/keys-with-options.pub"
status=0
as_user_setpriv env OPENCODE_WORKER_STATE_DIR="$tmp/state2" \
	OPENCODE_WORKER_AUTHORIZED_KEYS_FILE="$tmp/keys-with-options.pub" \
	timeout 20 "$bindir/entrypoint.sh" >"$tmp/g.out" 2>&1 || status=$?
check "refuses a keys file whose line 2 has options, naming the line (exit $status)" \
	refused "keys-with-options.pub line 2 starts with 'no-agent-forwarding'"
status=0
as_user env OPENCODE_WORKER_STATE_DIR="$tmp/state2" timeout 20 "$bindir/entrypoint.sh" >"$tmp/g.out" 2>&1 || status=$?
check "refuses to run as root (exit $status)" refused "refusing to run as root"

echo "--- h. both locks"
# every_key_forced: each authorized_keys line (there is one at least) starts with the prefix.
every_key_forced() {
	awk -v prefix="command=\"$bindir/opencode-worker --config $etc/worker.json serve\",restrict ssh-" \
		'index($0, prefix) != 1 { bad = 1 } END { exit bad || NR == 0 }' "$state/.ssh/authorized_keys"
}
check "every authorized_keys line starts with command=\"<worker> --config <config> serve\",restrict" \
	every_key_forced
rendered=$state/.ssh/sshd_config
check "the rendered sshd_config is docker/sshd_config with only the paths and the port changed" \
	diff <(tail -n +2 "$rendered" | sed -e "s|$etc/worker.json|/etc/opencode-worker/worker.json|g" \
		-e "s|$bindir/opencode-worker|/usr/local/bin/opencode-worker|g" \
		-e "s|$state|/var/lib/opencode-worker|g" -e "s|^Port $port\$|Port 2222|") docker/sshd_config
check "the rendered sshd_config forces the worker" \
	grep -qx "ForceCommand $bindir/opencode-worker --config $etc/worker.json serve" "$rendered"
# A key without the command= prefix (as if authorized_keys had been edited by hand): sshd's
# ForceCommand alone still gives it the worker.
cat "$client/bare.pub" >>"$state/.ssh/authorized_keys"
out=$(printf '%s\n' "$init" | "${ssh_base[@]}" -T -i "$client/bare" "$target" cat /etc/passwd 2>>"$tmp/ssh.err" | head -n 1 || true)
check "a key without command= still gets the worker (sshd_config's ForceCommand)" is_worker_reply <<<"$out"
check "sshd logs each session as forced-command" grep -q "Starting session: forced-command (config)" "$tmp/sshd.log"

echo
if [ "$failed" -gt 0 ]; then
	echo "--- sshd log"
	grep -v '^{' "$tmp/sshd.log" | tail -60
fi
echo "docker_runtime: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
