#!/usr/bin/env bash
# Idempotent set-up of a real, throw-away WordPress on loopback, for bench/check_wordpress.py.
# Not part of the test suite or CI. Needs root, Debian/Ubuntu apt, and a local MariaDB/MySQL whose
# root user logs in over the socket. Run it again at any time: it installs what is missing, keeps
# the site's posts, makes fresh application passwords and (re)starts the PHP server.
#
#   sudo deploy/wordpress-check/setup.sh            # then: python bench/check_wordpress.py
#   sudo deploy/wordpress-check/setup.sh --stop     # stop the PHP server
#   sudo deploy/wordpress-check/setup.sh --reset    # drop the site's database first (a fresh install)
set -euo pipefail

HOST=127.0.0.1
PORT="${WP_CHECK_PORT:-8089}"
SITE="http://$HOST:$PORT"
STATE=/var/lib/wordpress-check          # credentials.json, router.php, server.log, server.pid
DB=wp_publisher_check
DBUSER=wp_publisher_check
WP=/usr/share/wordpress
CONFIG="/etc/wordpress/config-$HOST.php"

mkdir -p "$STATE"
stop_server() {
  if [[ -f $STATE/server.pid ]] && kill -0 "$(cat "$STATE/server.pid")" 2>/dev/null; then
    kill "$(cat "$STATE/server.pid")"; sleep 0.5
  fi
  rm -f "$STATE/server.pid"
}
if [[ ${1:-} == --stop ]]; then stop_server; echo "stopped"; exit 0; fi

# 1. packages (Debian's wordpress package: code in /usr/share/wordpress, config per host in /etc/wordpress)
need=()
for pkg in wordpress wordpress-theme-twentytwentythree php-cli php-mysql; do dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg"); done
if ((${#need[@]})); then
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}"
fi

# 2. database and its user (the password is made once and kept in the config file)
if [[ ${1:-} == --reset ]]; then stop_server; mysql -uroot -e "DROP DATABASE IF EXISTS \`$DB\`"; fi
if [[ -f $CONFIG ]]; then
  DBPASS=$(sed -n "s/^define( *'DB_PASSWORD', *'\([^']*\)'.*/\1/p" "$CONFIG")
else
  DBPASS=$(head -c 18 /dev/urandom | base64 | tr -dc 'a-zA-Z0-9')
fi
mysql -uroot <<SQL
CREATE DATABASE IF NOT EXISTS \`$DB\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE USER IF NOT EXISTS '$DBUSER'@'localhost' IDENTIFIED BY '$DBPASS';
ALTER USER '$DBUSER'@'localhost' IDENTIFIED BY '$DBPASS';
GRANT ALL PRIVILEGES ON \`$DB\`.* TO '$DBUSER'@'localhost';
SQL

# 3. the host's config: plain HTTP on loopback is allowed application passwords only as 'local'
if [[ ! -f $CONFIG ]]; then
  salt() { head -c 48 /dev/urandom | base64 | tr -dc 'a-zA-Z0-9' ; }
  cat >"$CONFIG" <<PHP
<?php
define( 'DB_NAME', '$DB' );
define( 'DB_USER', '$DBUSER' );
define( 'DB_PASSWORD', '$DBPASS' );
define( 'DB_HOST', 'localhost' );
define( 'DB_CHARSET', 'utf8mb4' );
define( 'DB_COLLATE', '' );
define( 'AUTH_KEY', '$(salt)' );
define( 'SECURE_AUTH_KEY', '$(salt)' );
define( 'LOGGED_IN_KEY', '$(salt)' );
define( 'NONCE_KEY', '$(salt)' );
define( 'AUTH_SALT', '$(salt)' );
define( 'SECURE_AUTH_SALT', '$(salt)' );
define( 'LOGGED_IN_SALT', '$(salt)' );
define( 'NONCE_SALT', '$(salt)' );
define( 'WP_HOME', '$SITE' );
define( 'WP_SITEURL', '$SITE' );
define( 'WP_ENVIRONMENT_TYPE', 'local' );
define( 'WP_CONTENT_DIR', '/var/lib/wordpress/wp-content' );
define( 'WP_CONTENT_URL', '$SITE/wp-content' );
define( 'DISABLE_WP_CRON', true );
define( 'AUTOMATIC_UPDATER_DISABLED', true );
define( 'WP_HTTP_BLOCK_EXTERNAL', true );
PHP
  chmod 640 "$CONFIG"; chgrp www-data "$CONFIG" 2>/dev/null || true
fi
# the site's address follows WP_CHECK_PORT on every run
sed -i -E "s#^define\( '(WP_HOME|WP_SITEURL)', '[^']*' \);#define( '\1', '$SITE' );#; \
           s#^define\( 'WP_CONTENT_URL', '[^']*' \);#define( 'WP_CONTENT_URL', '$SITE/wp-content' );#" "$CONFIG"
mkdir -p /var/lib/wordpress/wp-content/uploads

# 4. the router: the PHP built-in server has no rewrite rules, so anything that is not a file goes to
#    index.php (pretty permalinks and /wp-json/ then work as under Apache's mod_rewrite).
#    /wp-content/ lives in /var/lib/wordpress (Debian), outside the document root.
cat >"$STATE/router.php" <<'PHP'
<?php
$path = urldecode(parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH));
if (str_starts_with($path, '/wp-content/')) {
    $file = realpath('/var/lib/wordpress' . $path);
    if ($file && str_starts_with($file, '/var/lib/wordpress/wp-content/') && is_file($file)
        && !str_ends_with($file, '.php')) {
        header('Content-Type: ' . (mime_content_type($file) ?: 'application/octet-stream'));
        readfile($file);
        return true;
    }
}
$file = $_SERVER['DOCUMENT_ROOT'] . $path;
if ($path !== '/' && is_file($file)) {
    if (str_ends_with($file, '.php')) { $_SERVER['SCRIPT_NAME'] = $path; chdir(dirname($file)); require $file; return true; }
    return false;
}
if (is_dir($file) && is_file(rtrim($file, '/') . '/index.php') && $path !== '/') {
    $_SERVER['SCRIPT_NAME'] = rtrim($path, '/') . '/index.php'; chdir($file); require $file . '/index.php'; return true;
}
$_SERVER['SCRIPT_NAME'] = '/index.php';
chdir($_SERVER['DOCUMENT_ROOT']);
require $_SERVER['DOCUMENT_ROOT'] . '/index.php';
PHP

# 5. install, users, permalinks and application passwords, through WordPress's own functions
cat >"$STATE/provision.php" <<'PHP'
<?php
[$_, $host, $port, $out] = $argv;
$_SERVER['HTTP_HOST'] = "$host:$port"; $_SERVER['SERVER_NAME'] = $host; $_SERVER['REQUEST_URI'] = '/';
$_SERVER['SERVER_PORT'] = $port; $_SERVER['REQUEST_METHOD'] = 'GET';
define('WP_INSTALLING', true);
require '/usr/share/wordpress/wp-load.php';
require_once ABSPATH . 'wp-admin/includes/upgrade.php';
require_once ABSPATH . 'wp-admin/includes/user.php';
add_filter('pre_wp_mail', '__return_true');  // no mail for the new site and users (there is no MTA)
if (!is_blog_installed()) {
    $r = wp_install('市安监局门户网站', 'publisher', 'publisher@bureau.example', false, '', wp_generate_password(24));
    fwrite(STDERR, "installed WordPress {$GLOBALS['wp_version']}\n");
}
update_option('timezone_string', 'Asia/Shanghai');
update_option('permalink_structure', '/%year%/%monthnum%/%postname%/');
flush_rewrite_rules(false);
$creds = ['site' => home_url(), 'wp_version' => $GLOBALS['wp_version'], 'php_version' => PHP_VERSION];
foreach (['publisher' => 'administrator', 'contributor' => 'contributor'] as $login => $role) {
    $user = get_user_by('login', $login);
    if (!$user) {
        $id = wp_insert_user(['user_login' => $login, 'user_pass' => wp_generate_password(24),
                              'user_email' => "$login@bureau.example", 'role' => $role]);
        $user = get_user_by('id', $id);
    }
    $user->set_role($role);
    foreach (WP_Application_Passwords::get_user_application_passwords($user->ID) as $item) {
        if ($item['name'] === 'publisher-check') {
            WP_Application_Passwords::delete_application_password($user->ID, $item['uuid']);
        }
    }
    [$password] = WP_Application_Passwords::create_new_application_password($user->ID, ['name' => 'publisher-check']);
    $creds[$login] = WP_Application_Passwords::chunk_password($password);
}
$creds['application_passwords_available'] = wp_is_application_passwords_available();
file_put_contents($out, json_encode($creds, JSON_PRETTY_PRINT | JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES));
chmod($out, 0600);
PHP
php "$STATE/provision.php" "$HOST" "$PORT" "$STATE/credentials.json"
chown -R www-data:www-data /var/lib/wordpress/wp-content 2>/dev/null || true

# 6. the server (restarted, so a changed router or config takes effect)
stop_server
cd "$WP"
PHP_CLI_SERVER_WORKERS=4 nohup php -S "$HOST:$PORT" -t "$WP" "$STATE/router.php" >"$STATE/server.log" 2>&1 &
echo $! >"$STATE/server.pid"
for _ in $(seq 50); do
  curl -fsS -o /dev/null "$SITE/wp-json/" 2>/dev/null && break; sleep 0.2
done
code=$(curl -sS -o /dev/null -w '%{http_code}' "$SITE/wp-json/wp/v2/posts" || true)
[[ $code == 200 ]] || { echo "the REST API does not answer (HTTP $code); see $STATE/server.log" >&2; exit 1; }
echo "WordPress on $SITE; credentials in $STATE/credentials.json"
