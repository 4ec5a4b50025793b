# Sourced by the curl benchmarks (side-by-side.sh, ab-threads.sh, convert-cpu.sh): one nginx
# (Debian's) on 127.0.0.1, one worker, serving one image at http://127.0.0.1:$nginx_port/disk.img,
# with a configuration, pid file, logs and temporary paths of its own in a private folder; stopped
# by its PID.
#
#   start_nginx DIR IMAGE   starts it (DIR is made) and sets nginx_pid and nginx_port
#   stop_nginx              stops it, if started

nginx_pid=""
nginx_port=""

start_nginx() {
    local dir="$1" image="$2"
    mkdir -p "$dir/tmp"
    nginx_port=$(python3 -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
    cat >"$dir/nginx.conf" <<NGINX
daemon off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    keepalive_requests 1000000;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    server {
        listen 127.0.0.1:$nginx_port;
        # The image itself, where nginx's worker (another user when run as root) can read it: the
        # private work directory is not readable by others.
        location = /disk.img { alias $image; }
    }
}
NGINX
    /usr/sbin/nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" >"$dir/output.log" 2>&1 &
    nginx_pid=$!
    for _ in $(seq 1 200); do
        python3 -c "import socket; socket.create_connection(('127.0.0.1', $nginx_port)).close()" 2>/dev/null && return 0
        sleep 0.05
    done
    echo "nginx did not start:" >&2
    cat "$dir/output.log" "$dir/error.log" >&2
    exit 1
}

stop_nginx() {
    if [ -n "$nginx_pid" ]; then
        kill "$nginx_pid" 2>/dev/null || true
        wait "$nginx_pid" 2>/dev/null || true
        nginx_pid=""
    fi
}
