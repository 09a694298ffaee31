//! The Caddy gateway: its static Caddyfile, one site file per routed service, and a graceful
//! reload through Caddy's admin API on a unix socket under `/var/vol/gateway/admin`.
//!
//! Why a socket and not `docker exec caddy reload`: Caddy 2.11 answers that with HTTP 403
//! (caddy#7528, admin origin checks). POST /load on the socket is what `caddy reload` does.
//!
//! A reload drops no request: see `reload` here and `crate::reuseport` for the kernel half.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::model::{Access, Domain, Gateway, HttpsMode, Route, Service};

/// Inside the container: the admin socket, in the `admin` dir of the gateway layout.
pub(crate) const ADMIN_SOCKET_IN_CONTAINER: &str = "/run/pi-setup/admin.sock";
/// On the host, relative to `/var/vol/gateway`.
pub(crate) const ADMIN_SOCKET_ON_HOST: &str = "admin/admin.sock";
/// The Caddyfile the gateway runs with, relative to `/var/vol/gateway`.
pub(crate) const CADDYFILE_ON_HOST: &str = "etc/Caddyfile";
/// Relative to `/var/vol/gateway`: which gateway files the running gateway has loaded (their
/// hash, see `Desired::gateway_files_hash`), or `draining ...` while `crate::drain` has it
/// load something else.
pub(crate) const LOADED_MARKER_ON_HOST: &str = "admin/loaded";

pub(crate) fn caddyfile(g: &Gateway) -> String {
    let mut global = format!(
        "\tadmin unix/{ADMIN_SOCKET_IN_CONTAINER}\n\tshutdown_delay {SHUTDOWN_DELAY_MS}ms\n"
    );
    if let Some(email) = &g.email {
        global.push_str(&format!("\temail {email}\n"));
    }
    if g.https == HttpsMode::Off {
        global.push_str("\tauto_https off\n");
    }
    if !g.trusted_proxies.is_empty() {
        // Behind these, the client's address is the one they forward: what `lan` access and
        // the logs go by.
        global.push_str(&format!(
            "\tservers {{\n\t\ttrusted_proxies static {}\n\t}}\n",
            g.trusted_proxies.join(" ")
        ));
    }
    format!(
        "# Written by pi-setup. Do not edit: it is rewritten on every install.\n\
         # One file per routed service is in sites/; pi-setup writes those too.\n\
         {{\n{global}}}\n\n\
         # Requests for a host no service answers to.\n\
         :80 {{\n\trespond \"No service answers to this host name.\" 404\n}}\n\n\
         {SITES_IMPORT}"
    )
}

/// The line of the Caddyfile that loads the site files.
const SITES_IMPORT: &str = "import /etc/caddy/sites/*.caddy\n";

/// The Caddyfile the gateway is reloaded with while the services in `draining` stop (see
/// `crate::drain`): the same as `caddyfile` with the site files inline, as `site_files_draining`
/// renders them. Only ever loaded through the admin API: the files on disk stay as they are, so
/// a restarted gateway (or a reload of those files) routes to every service again.
pub(crate) fn caddyfile_draining(
    g: &Gateway,
    services: &[Service],
    draining: &BTreeSet<&str>,
) -> String {
    let names: Vec<&str> = draining.iter().copied().collect();
    let mut sites = format!(
        "# Draining {}: their routes show the maintenance page while they stop.\n",
        names.join(", ")
    );
    for f in site_files_draining(g, services, draining) {
        sites.push_str(&format!("\n# sites/{}\n{}", f.name, f.text));
    }
    caddyfile(g).replacen(SITES_IMPORT, &sites, 1)
}

/// Served with status 503 while a service is down (stopped, restarting, being backed up), in
/// place of a bare 502. `gateway.maintenance_page` in the profile replaces it.
pub(crate) const MAINTENANCE_HTML: &str = include_str!("maintenance.html");

/// Where the gateway container sees the static directories of services (`static` routes):
/// `/var/vol/<service>/<dir>` is mounted read-only at `<this>/<service>/<dir>`.
pub(crate) const STATIC_ROOT: &str = "/srv/static";

/// One file of the gateway's `sites/` directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SiteFile {
    /// `<service>.caddy`, or `shared-<host>.caddy` for a host several services answer on.
    pub(crate) name: String,
    pub(crate) text: String,
    /// Holds a password hash.
    pub(crate) private: bool,
}

/// One host path: the service it belongs to, the path, and what it leads to.
type Entry<'a> = (&'a Service, String, Target<'a>);
/// Every host with its paths, in the order hosts first appear.
type ByHost<'a> = Vec<(&'a Domain, Vec<Entry<'a>>)>;

/// What one host path leads to.
enum Target<'a> {
    Proxy { port: u16, strip: bool },
    Static { dir: &'a str },
}

/// The site files for every service. A service that only has `domains` gets the blocks it
/// always had; hosts with path routes or static files get one block each, its routes longest
/// path first; a host that several services answer on (by path) gets a file of its own.
pub(crate) fn site_files(g: &Gateway, services: &[Service]) -> Vec<SiteFile> {
    site_files_draining(g, services, &BTreeSet::new())
}

/// `site_files` with the proxied routes of the services in `draining` answered by the
/// maintenance page (see `crate::drain`); their `static` routes are served as always.
pub(crate) fn site_files_draining(
    g: &Gateway,
    services: &[Service],
    draining: &BTreeSet<&str>,
) -> Vec<SiteFile> {
    // Every host path, with the service it belongs to.
    let mut by_host: ByHost = Vec::new();
    // Where each host is in `by_host`: thousands of services must not mean a search per path.
    let mut index: BTreeMap<&Domain, usize> = BTreeMap::new();
    let routes: Vec<(&Service, Vec<Route>)> =
        services.iter().map(|s| (s, s.all_routes())).collect();
    for (s, rs) in &routes {
        for r in rs {
            push_entry(
                &mut by_host,
                &mut index,
                &r.host,
                (
                    *s,
                    r.path.clone(),
                    Target::Proxy {
                        port: r.port,
                        strip: r.strip,
                    },
                ),
            );
        }
        for st in &s.statics {
            push_entry(
                &mut by_host,
                &mut index,
                &st.host,
                (*s, st.path.clone(), Target::Static { dir: &st.dir }),
            );
        }
    }
    let shared_hosts: BTreeSet<&Domain> = by_host
        .iter()
        .filter(|(_, e)| e.iter().any(|(o, _, _)| o.name != e[0].0.name))
        .map(|(h, _)| *h)
        .collect();
    let shared = |host: &Domain| shared_hosts.contains(host);
    let mut files = Vec::new();
    for s in services {
        let mine: Vec<&Domain> = s.hosts().into_iter().filter(|h| !shared(h)).collect();
        if mine.is_empty() {
            continue;
        }
        let simple = s.routes.is_empty() && s.statics.is_empty();
        let text = if simple {
            site(g, s, &mine, draining.contains(s.name.as_str()))
        } else {
            let mut t = header(&format!("Service '{}'", s.name));
            for h in &mine {
                let entries = &by_host[index[*h]].1;
                t.push_str(&host_block(g, h, entries, draining));
            }
            t
        };
        files.push(SiteFile {
            name: format!("{}.caddy", s.name),
            text,
            private: matches!(s.access, Access::Auth { .. }),
        });
    }
    for (host, entries) in &by_host {
        if shared(host) {
            let mut t = header(&format!("Host '{host}', shared by several services"));
            t.push_str(&host_block(g, host, entries, draining));
            files.push(SiteFile {
                name: format!("shared-{host}.caddy"),
                text: t,
                private: entries
                    .iter()
                    .any(|(s, _, _)| matches!(s.access, Access::Auth { .. })),
            });
        }
    }
    files
}

fn push_entry<'a>(
    by_host: &mut ByHost<'a>,
    index: &mut BTreeMap<&'a Domain, usize>,
    host: &'a Domain,
    entry: Entry<'a>,
) {
    if let Some(&i) = index.get(host) {
        by_host[i].1.push(entry);
    } else {
        index.insert(host, by_host.len());
        by_host.push((host, vec![entry]));
    }
}

fn header(what: &str) -> String {
    format!("# {what}. Written by pi-setup; edit the service definitions instead.\n")
}

/// One host's block: each path in its own `handle`, longest first, `/` last; access control
/// per service; the maintenance page for the whole host.
fn host_block(g: &Gateway, host: &Domain, entries: &[Entry], draining: &BTreeSet<&str>) -> String {
    let internal_tls = match g.https {
        HttpsMode::Off => false,
        HttpsMode::Internal => true,
        HttpsMode::Auto => host.is_lan_only(),
    };
    let scheme = if g.https == HttpsMode::Off {
        "http://"
    } else {
        ""
    };
    let mut out = format!("\n{scheme}{host} {{\n");
    if internal_tls {
        out.push_str("\ttls internal\n");
    }
    if g.compress {
        out.push_str("\tencode zstd gzip\n");
    }
    let mut lan_services: Vec<&str> = Vec::new();
    for (s, _, _) in entries {
        if s.access == Access::Lan && !lan_services.contains(&s.name.as_str()) {
            lan_services.push(s.name.as_str());
            out.push_str(&format!(
                "\t@outside_{} not client_ip private_ranges\n",
                s.name.as_str().replace('-', "_")
            ));
        }
    }
    let mut ordered: Vec<&Entry> = entries.iter().collect();
    ordered.sort_by_key(|(_, path, _)| std::cmp::Reverse(if path == "/" { 0 } else { path.len() }));
    let mut has_root = false;
    for (i, (s, path, target)) in ordered.iter().enumerate() {
        if path == "/" {
            has_root = true;
            out.push_str("\thandle {\n");
        } else {
            out.push_str(&format!(
                "\t@p{i} path {path} {path}/*\n\thandle @p{i} {{\n"
            ));
        }
        match &s.access {
            Access::Public => {}
            Access::Lan => out.push_str(&format!(
                "\t\trespond @outside_{} \"This service is only available on the local network.\" 403\n",
                s.name.as_str().replace('-', "_")
            )),
            Access::Auth { user, hash } => {
                out.push_str(&format!("\t\tbasic_auth {{\n\t\t\t{user} {hash}\n\t\t}}\n"));
            }
        }
        match target {
            Target::Proxy { .. } if draining.contains(s.name.as_str()) => {
                out.push_str(&draining_proxy("\t\t"));
            }
            Target::Proxy { port, strip } => {
                if *strip {
                    out.push_str(&format!("\t\turi strip_prefix {path}\n"));
                }
                out.push_str(&format!("\t\treverse_proxy {}:{port}\n", s.name));
            }
            Target::Static { dir } => {
                out.push_str(&format!(
                    "\t\turi strip_prefix {path}\n\t\troot * {STATIC_ROOT}/{}/{dir}\n\t\tfile_server\n",
                    s.name
                ));
            }
        }
        out.push_str("\t}\n");
    }
    if !has_root {
        out.push_str("\thandle {\n\t\trespond \"Not found\" 404\n\t}\n");
    }
    out.push_str(
        "\t# A service is down: Caddy cannot resolve or reach it. Show the maintenance page.\n\
         \thandle_errors 502 503 504 {\n\
         \t\trewrite * /maintenance.html\n\
         \t\tfile_server {\n\t\t\troot /etc/caddy\n\t\t\tstatus 503\n\t\t}\n\
         \t}\n}\n",
    );
    out
}

/// In place of `reverse_proxy` while the service is drained: the maintenance page, so no new
/// request reaches the container about to stop. Served by `file_server` rather than through
/// `handle_errors` (`error 503`): Caddy orders `error` before `respond`, which would answer
/// clients outside the LAN with it instead of their 403; `file_server` comes after `respond`
/// and `basic_auth`, as `reverse_proxy` does.
fn draining_proxy(indent: &str) -> String {
    format!(
        "{indent}# Being stopped or replaced (pi-setup drains it): the maintenance page.\n\
         {indent}rewrite * /maintenance.html\n\
         {indent}file_server {{\n\
         {indent}\troot /etc/caddy\n\
         {indent}\tstatus 503\n\
         {indent}}}\n"
    )
}

/// The site block(s) of a service that only has `domains` (those of `domains` given): proxied
/// to `name:port` on the network.
fn site(g: &Gateway, s: &Service, domains: &[&Domain], draining: bool) -> String {
    let upstream = format!("{}:{}", s.name, s.port);
    // No file paths in here: the same service must render the same file wherever it came from.
    let mut out = format!(
        "# Service '{}'. Written by pi-setup; edit the service definition instead.\n",
        s.name
    );
    let (lan, public): (Vec<&Domain>, Vec<&Domain>) =
        domains.iter().copied().partition(|d| d.is_lan_only());
    let groups: Vec<(Vec<&Domain>, bool)> = match g.https {
        HttpsMode::Off => vec![(domains.to_vec(), false)],
        HttpsMode::Internal => vec![(domains.to_vec(), true)],
        HttpsMode::Auto => vec![(public, false), (lan, true)],
    };
    for (domains, internal_tls) in groups.into_iter().filter(|(d, _)| !d.is_empty()) {
        let scheme = if g.https == HttpsMode::Off {
            "http://"
        } else {
            ""
        };
        let addrs: Vec<String> = domains.iter().map(|d| format!("{scheme}{d}")).collect();
        out.push_str(&format!("\n{} {{\n", addrs.join(", ")));
        if internal_tls {
            out.push_str("\ttls internal\n");
        }
        if g.compress {
            out.push_str("\tencode zstd gzip\n");
        }
        match &s.access {
            Access::Public => {}
            // Caddy sees the client's address: Docker's DNAT keeps it for traffic from outside.
            Access::Lan => out.push_str(
                "\t@outside not client_ip private_ranges\n\
                 \trespond @outside \"This service is only available on the local network.\" 403\n",
            ),
            Access::Auth { user, hash } => {
                out.push_str(&format!("\tbasic_auth {{\n\t\t{user} {hash}\n\t}}\n"));
            }
        }
        if draining {
            out.push_str(&draining_proxy("\t"));
        } else {
            out.push_str(&format!("\treverse_proxy {upstream}\n"));
        }
        out.push_str(
            "\t# The service is down: Caddy cannot resolve or reach it. Show the maintenance page.\n\
             \thandle_errors 502 503 504 {\n\
             \t\trewrite * /maintenance.html\n\
             \t\tfile_server {\n\t\t\troot /etc/caddy\n\t\t\tstatus 503\n\t\t}\n\
             \t}\n}\n",
        );
    }
    out
}

/// The URL a service answers on, for the summary.
pub(crate) fn url(g: &Gateway, d: &Domain) -> String {
    if g.https == HttpsMode::Off {
        if g.http_port == 80 {
            format!("http://{d}/")
        } else {
            format!("http://{d}:{}/", g.http_port)
        }
    } else if g.https_port == 443 {
        format!("https://{d}/")
    } else {
        format!("https://{d}:{}/", g.https_port)
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ReloadError {
    #[error("cannot reach the gateway's admin socket {path}: {source}")]
    Connect {
        path: String,
        source: std::io::Error,
    },
    #[error("the gateway refused the new configuration (HTTP {status}): {body}")]
    Refused { status: u16, body: String },
    #[error("talking to the gateway's admin socket: {0}")]
    Io(#[from] std::io::Error),
}

/// Asks the admin API for its config: proves the gateway is up and reloadable.
pub(crate) fn ping(socket: &Path) -> Result<(), ReloadError> {
    admin_request(socket, "GET", "/config/", None).map(|_| ())
}

/// What one look at a gateway that has just been (re)started found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Startup {
    /// Its admin socket answers: Caddy opens it only once its config has loaded.
    Loaded,
    /// Not yet, and nothing is wrong so far.
    Starting,
    /// It exited or was restarted (Caddy exits when it cannot load its config, and Docker
    /// restarts it over and over): why, in words.
    Failed(String),
}

/// How long a gateway may take to load its config after it was (re)started. Caddy needs well
/// under a second; a slow SD card and a cold start make it a few.
pub(crate) const STARTUP_PATIENCE: Duration = Duration::from_secs(15);

/// Looks at a starting gateway (`look`) until it has loaded its config, has failed, or
/// `patience` has run out; the pause between looks grows from 50 ms to 500 ms. The error
/// says what the last look found.
pub(crate) async fn wait_until_loaded<F, Fut>(patience: Duration, mut look: F) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Startup>,
{
    let deadline = std::time::Instant::now() + patience;
    let mut pause = Duration::from_millis(50);
    loop {
        match look().await {
            Startup::Loaded => return Ok(()),
            Startup::Failed(why) => return Err(why),
            Startup::Starting if std::time::Instant::now() >= deadline => {
                return Err(format!(
                    "its admin socket did not answer within {} s",
                    patience.as_secs_f32()
                ))
            }
            Startup::Starting => {
                tokio::time::sleep(pause.min(deadline - std::time::Instant::now())).await;
                pause = (pause * 2).min(Duration::from_millis(500));
            }
        }
    }
}

/// How long a replaced server keeps answering before it shuts down. Caddy only waits when the
/// server's listen address is going away, which is why `reload` alternates its spelling.
/// During the wait the old server gets no new connections (`crate::reuseport`); it only
/// answers those it had accepted. Their requests may still be on their way: a client on a
/// long round trip sends its request after the TLS handshake, several hundred milliseconds
/// after the connection, and Go drops, unanswered, a request read once shutdown has begun.
/// A second covers round trips up to about 600 ms (a 250 ms delay dropped about a third of
/// the requests sent 400 ms after connecting, `services::adding_and_removing_services_*`).
/// The cost: Caddy's `/load` answers only after the wait, so each reload takes a second.
pub(crate) const SHUTDOWN_DELAY_MS: u32 = 1000;

/// The second spelling of the gateway's listen addresses. `:80` and `0.0.0.0:80` are the same
/// socket to Go (a dual-stack wildcard) but different listeners to Caddy.
const ALTERNATE_BIND: &str = "\tdefault_bind 0.0.0.0\n";

/// `caddyfile` with its listen addresses spelled the other way (see `reload`).
pub(crate) fn with_alternate_bind(caddyfile: &str) -> String {
    caddyfile.replacen("{\n", &format!("{{\n{ALTERNATE_BIND}"), 1)
}

/// Loads `caddyfile` into the running gateway: Caddy adapts it (resolving the `import` inside
/// the container), swaps the config, and rolls back on error.
///
/// No request is dropped, given `crate::reuseport::steer_to_newest` on the gateway first: the
/// new config spells its listen addresses differently from the running one (`:80` one time,
/// `0.0.0.0:80` the next), so Caddy sees the old listeners as closing and holds the old
/// server for `shutdown_delay` — answering what it has accepted — before shutting it down.
/// With the same spelling Caddy shuts the old server down at once, and Go drops a request it
/// reads after that (about one per reload under load).
pub(crate) fn reload(socket: &Path, caddyfile: &str) -> Result<(), ReloadError> {
    let running = admin_request(socket, "GET", "/config/apps/http/servers", None)?;
    let body = if uses_alternate_bind(&running) {
        caddyfile.to_string()
    } else {
        with_alternate_bind(caddyfile)
    };
    admin_request(socket, "POST", "/load", Some(&body)).map(|_| ())
}

/// Whether the running servers (Caddy's JSON for `apps.http.servers`) listen on the
/// alternate spelling.
fn uses_alternate_bind(servers_json: &str) -> bool {
    let servers: serde_json::Value = serde_json::from_str(servers_json).unwrap_or_default();
    servers
        .as_object()
        .into_iter()
        .flat_map(|m| m.values())
        .filter_map(|srv| srv.get("listen")?.as_array())
        .flatten()
        .filter_map(|l| l.as_str())
        .any(|l| l.starts_with("0.0.0.0:"))
}

/// Requests the gateway is proxying to `service` now, by any of its ports: Caddy's
/// `/reverse_proxy/upstreams` lists each upstream address (`web:80`) with the requests in
/// flight to it, also those a replaced configuration is still finishing (Caddy 2.11.2 and
/// newer; an older one forgets an address once no configuration uses it).
pub(crate) fn in_flight(socket: &Path, service: &str) -> Result<u64, ReloadError> {
    let body = admin_request(socket, "GET", "/reverse_proxy/upstreams", None)?;
    Ok(in_flight_of(&body, service))
}

fn in_flight_of(upstreams_json: &str, service: &str) -> u64 {
    let upstreams: serde_json::Value = serde_json::from_str(upstreams_json).unwrap_or_default();
    upstreams
        .as_array()
        .into_iter()
        .flatten()
        .filter(|u| {
            u.get("address")
                .and_then(|a| a.as_str())
                .and_then(|a| a.rsplit_once(':'))
                .is_some_and(|(host, _)| host == service)
        })
        .filter_map(|u| u.get("num_requests")?.as_u64())
        .sum()
}

/// One HTTP/1.1 request on the admin socket; the body of a 200 answer, else an error.
fn admin_request(
    socket: &Path,
    method: &str,
    path: &str,
    caddyfile: Option<&str>,
) -> Result<String, ReloadError> {
    let mut stream = UnixStream::connect(socket).map_err(|source| ReloadError::Connect {
        path: socket.display().to_string(),
        source,
    })?;
    stream.set_read_timeout(Some(Duration::from_mins(1)))?;
    let body = caddyfile.unwrap_or("").as_bytes();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/caddyfile\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or("")
        .trim()
        .to_string();
    if status == 200 {
        Ok(body)
    } else {
        Err(ReloadError::Refused { status, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `wait_until_loaded` over a script of looks; returns the result and the looks taken.
    fn wait_over(patience: Duration, script: Vec<Startup>) -> (Result<(), String>, usize) {
        let looks = std::cell::Cell::new(0);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let result = runtime.block_on(wait_until_loaded(patience, || {
            let n = looks.get();
            looks.set(n + 1);
            let found = script.get(n).cloned().unwrap_or(Startup::Starting);
            async move { found }
        }));
        (result, looks.get())
    }

    #[test]
    fn waiting_for_the_gateway_ends_when_it_loads_fails_or_runs_out_of_time() {
        let long = Duration::from_secs(30);
        assert_eq!(
            wait_over(
                long,
                vec![Startup::Starting, Startup::Starting, Startup::Loaded]
            ),
            (Ok(()), 3)
        );
        assert_eq!(
            wait_over(
                long,
                vec![
                    Startup::Starting,
                    Startup::Failed("it exited".into()),
                    Startup::Loaded
                ]
            ),
            (Err("it exited".into()), 2),
            "a failure ends the wait at once, without waiting out the deadline"
        );
        let started = std::time::Instant::now();
        let (result, looks) = wait_over(Duration::from_millis(300), Vec::new());
        assert_eq!(
            result,
            Err("its admin socket did not answer within 0.3 s".into())
        );
        assert!(looks >= 3, "it kept looking: {looks}");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(5),
            "{took:?}"
        );
    }

    #[test]
    fn the_alternate_spelling_goes_into_the_global_options_and_is_recognised() {
        let file = "# Written by pi-setup.\n{\n\tadmin unix//run/pi-setup/admin.sock\n}\n\n:80 {\n\trespond \"x\" 404\n}\n";
        let alt = with_alternate_bind(file);
        assert!(
            alt.starts_with("# Written by pi-setup.\n{\n\tdefault_bind 0.0.0.0\n\tadmin"),
            "{alt}"
        );
        assert_eq!(
            alt.matches("default_bind").count(),
            1,
            "only the global block"
        );

        // What Caddy answers for GET /config/apps/http/servers, each way.
        assert!(!uses_alternate_bind(
            r#"{"srv0":{"listen":[":80"],"routes":[]}}"#
        ));
        assert!(uses_alternate_bind(
            r#"{"srv0":{"listen":["0.0.0.0:443"]},"srv1":{"listen":["0.0.0.0:80"]}}"#
        ));
        assert!(!uses_alternate_bind("null"), "no http app yet");
    }

    /// The gateway and services of a profile, as validated.
    fn model_of(profile: &str) -> crate::model::Model {
        crate::input::load(&crate::input::source::Source::new("p.toml", profile), &[]).unwrap()
    }

    const SERVICES: &str = "[[service]]\nname = \"web\"\nimage = \"a:1\"\nport = 8080\ndomains = [\"example.com\", \"web.local\"]\n\n[[service]]\nname = \"nas\"\nimage = \"a:1\"\ndomains = [\"nas.home.arpa\"]\naccess = \"lan\"\n\n[[service]]\nname = \"admin\"\nimage = \"a:1\"\ndomains = [\"admin.example.com\"]\naccess = \"auth\"\nauth_user = \"me\"\nauth_hash = \"$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy\"\n";

    #[test]
    fn caddyfile_with_automatic_https_and_an_acme_email() {
        let m = model_of("[gateway]\nemail = \"admin@example.com\"\ntrusted_proxies = [\"173.245.48.0/20\", \"2400:cb00::/32\", \"10.0.0.1\"]\n");
        insta::assert_snapshot!(caddyfile(&m.gateway));
    }

    #[test]
    fn caddyfile_with_https_off() {
        let m = model_of("[gateway]\nhttps = \"off\"\nhttp_port = 8080\n");
        insta::assert_snapshot!(caddyfile(&m.gateway));
    }

    #[test]
    fn site_files_for_public_lan_and_auth_services_with_automatic_https() {
        let m = model_of(SERVICES);
        let sites: Vec<String> = site_files(&m.gateway, &m.services)
            .into_iter()
            .map(|f| f.text)
            .collect();
        insta::assert_snapshot!(sites.join("\n---\n"));
    }

    #[test]
    fn site_files_with_https_off() {
        let m = model_of(&format!("[gateway]\nhttps = \"off\"\n\n{SERVICES}"));
        insta::assert_snapshot!(site_files(&m.gateway, &m.services)[0].text);
    }

    #[test]
    fn one_host_served_by_two_services_by_path_with_static_files() {
        let m = model_of(
            "[[service]]\nname = \"web\"\nimage = \"a:1\"\nport = 8000\ndomains = [\"example.com\"]\n\
             static = [{ host = \"example.com\", path = \"/static\", dir = \"static\" }, { host = \"example.com\", path = \"/media\", dir = \"media\" }]\n\n\
             [[service]]\nname = \"graphql\"\nimage = \"a:1\"\nport = 8080\n\
             routes = [{ host = \"example.com\", path = \"/graphiql\", strip = false }, { host = \"api.example.com\" }]\n\n\
             [[service]]\nname = \"firefly\"\nimage = \"a:1\"\naccess = \"lan\"\n\
             routes = [{ host = \"example.com\", path = \"/firefly\", strip = true }]\n",
        );
        let files = site_files(&m.gateway, &m.services);
        let listing: Vec<String> = files
            .iter()
            .map(|f| format!("=== {}\n{}", f.name, f.text))
            .collect();
        insta::assert_snapshot!(listing.join("\n"));
    }

    #[test]
    fn a_route_can_go_to_another_port_of_its_service() {
        let m = model_of(
            "[gateway]\nhttps = \"off\"\n\n\
             [[service]]\nname = \"app\"\nimage = \"a:1\"\nport = 8000\ndomains = [\"example.com\"]\n\
             routes = [{ host = \"example.com\", path = \"/admin\", port = 9000 }]\n",
        );
        let text = caddyfile_draining(&m.gateway, &m.services, &BTreeSet::new());
        let admin = text.find("/admin").expect(&text);
        let to_admin = text[admin..].find("reverse_proxy app:9000").expect(&text);
        assert!(
            !text[admin..admin + to_admin].contains("reverse_proxy"),
            "/admin goes to port 9000: {text}"
        );
        assert!(text.contains("reverse_proxy app:8000"), "{text}");
    }

    #[test]
    fn a_drained_service_shows_the_maintenance_page_on_its_routes_and_keeps_its_static_files() {
        // web: domains, a path route and static files on a host it shares with graphql;
        // simple: domains only. Both drained; graphql and firefly are not.
        let m = model_of(
            "[gateway]\nhttps = \"off\"\n\n\
             [[service]]\nname = \"web\"\nimage = \"a:1\"\nport = 8000\ndomains = [\"example.com\"]\n\
             routes = [{ host = \"api.example.com\", path = \"/v1\", strip = true }]\n\
             static = [{ host = \"example.com\", path = \"/static\", dir = \"static\" }]\n\n\
             [[service]]\nname = \"graphql\"\nimage = \"a:1\"\nport = 8080\n\
             routes = [{ host = \"example.com\", path = \"/graphiql\" }]\n\n\
             [[service]]\nname = \"simple\"\nimage = \"a:1\"\ndomains = [\"simple.local\"]\naccess = \"lan\"\n\n\
             [[service]]\nname = \"firefly\"\nimage = \"a:1\"\ndomains = [\"firefly.local\"]\n",
        );
        let draining = BTreeSet::from(["web", "simple"]);
        let text = caddyfile_draining(&m.gateway, &m.services, &draining);
        assert!(!text.contains("import "), "{text}");
        assert!(!text.contains("reverse_proxy web:"), "{text}");
        assert!(!text.contains("reverse_proxy simple:"), "{text}");
        assert!(text.contains("reverse_proxy graphql:8080"), "{text}");
        assert!(text.contains("reverse_proxy firefly:80"), "{text}");
        assert!(text.contains("root * /srv/static/web/static"), "{text}");
        insta::assert_snapshot!(text);
        // Nothing drained: the same sites as the files on disk.
        let none = caddyfile_draining(&m.gateway, &m.services, &BTreeSet::new());
        for f in site_files(&m.gateway, &m.services) {
            assert!(none.contains(&f.text), "{}", f.name);
        }
    }

    #[test]
    fn requests_in_flight_are_counted_per_service_over_its_ports() {
        let upstreams = r#"[{"address":"web:80","num_requests":2,"fails":0},
            {"address":"web:8080","num_requests":1,"fails":0},
            {"address":"webby:80","num_requests":5,"fails":0},
            {"address":"db:5432","num_requests":7,"fails":0}]"#;
        assert_eq!(in_flight_of(upstreams, "web"), 3);
        assert_eq!(in_flight_of(upstreams, "api"), 0);
        assert_eq!(in_flight_of("[]", "web"), 0);
        assert_eq!(in_flight_of("not json", "web"), 0);
    }
}
