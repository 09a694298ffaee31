//! The gateway's own settings against the real Caddy: dual-stack publishing, response
//! compression, trusted proxies.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::harness::{
    assert_ok, http_get_path, inspect, wait_until, Sandbox, BUSYBOX_IMAGE, CADDY_IMAGE,
};

/// A busybox httpd serving a compressible page on `page.test`, with `access` and `gateway`
/// settings of the test's choosing.
fn profile(sb: &Sandbox, gateway: &str, access: &str) -> std::path::PathBuf {
    sb.write_profile(&format!(
        "[gateway]\nimage = \"{CADDY_IMAGE}\"\nhttp_port = {}\nhttps = \"off\"\n{gateway}\n\n\
         [[service]]\nname = \"page\"\nimage = \"{BUSYBOX_IMAGE}\"\ndomains = [\"page.test\"]\nport = 8080\n\
         volumes = [\"www:/www\"]\ncommand = [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n{access}\n",
        sb.http_port
    ))
}

/// A raw GET: the whole response (status line, headers, body) as text.
fn get(addr: &str, host: &str, headers: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: {host}\r\n{headers}Connection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

fn status(response: &str) -> Option<u16> {
    response.split_whitespace().nth(1)?.parse().ok()
}

/// Polls until the page answers 200 at `addr` (a fresh container needs a moment).
fn answers(addr: &str) -> bool {
    wait_until(Duration::from_secs(15), || {
        get(addr, "page.test", "").ok().and_then(|r| status(&r)) == Some(200)
    })
}

#[test]
fn without_a_bind_address_the_gateway_answers_on_ipv4_and_ipv6() {
    let sb = Sandbox::new();
    sb.install(&profile(&sb, "", ""));
    std::fs::write(sb.path("/var/vol/page/www/index.html"), "hello\n").unwrap();
    assert!(answers(&format!("127.0.0.1:{}", sb.http_port)));
    // Where the kernel has IPv6 (loopback ::1): the same gateway, routed by Host.
    let ipv6 = std::net::TcpListener::bind("[::1]:0").is_ok();
    if ipv6 {
        assert!(answers(&format!("[::1]:{}", sb.http_port)), "over [::1]");
    }
    // With a `lan` service, IPv4 only: over IPv6, Docker's proxy would hand the gateway every
    // client as the network's (private) gateway address, and `lan` would let anyone in.
    sb.install(&profile(&sb, "", "access = \"lan\""));
    let bindings = inspect(
        &sb.container("gateway"),
        "{{json .HostConfig.PortBindings}}",
    );
    assert!(
        bindings.contains("\"HostIp\":\"0.0.0.0\"") && !bindings.contains("\"HostIp\":\"\""),
        "{bindings}"
    );
    assert!(answers(&format!("127.0.0.1:{}", sb.http_port)));
    if ipv6 {
        let refused = get(&format!("[::1]:{}", sb.http_port), "page.test", "");
        assert!(refused.is_err(), "{refused:?}");
    }
}

#[test]
fn responses_are_compressed_for_clients_that_accept_it_unless_turned_off() {
    let sb = Sandbox::new();
    sb.install(&profile(&sb, "bind = \"127.0.0.1\"", ""));
    let page = "compress me please ".repeat(200);
    std::fs::write(sb.path("/var/vol/page/www/index.html"), &page).unwrap();
    let addr = format!("127.0.0.1:{}", sb.http_port);
    assert!(answers(&addr));
    let zipped = get(&addr, "page.test", "Accept-Encoding: gzip\r\n").unwrap();
    assert!(
        zipped
            .to_ascii_lowercase()
            .contains("content-encoding: gzip"),
        "{}",
        &zipped[..zipped.find("\r\n\r\n").unwrap_or(zipped.len())]
    );
    let plain = get(&addr, "page.test", "").unwrap();
    assert!(!plain.to_ascii_lowercase().contains("content-encoding"));

    assert_ok(
        &sb.run(&[
            "install",
            "--profile",
            profile(&sb, "bind = \"127.0.0.1\"\ncompress = false", "")
                .to_str()
                .unwrap(),
        ]),
    );
    let off = get(&addr, "page.test", "Accept-Encoding: gzip\r\n").unwrap();
    assert!(
        !off.to_ascii_lowercase().contains("content-encoding"),
        "{off}"
    );
}

#[test]
fn behind_a_trusted_proxy_lan_access_goes_by_the_forwarded_client_address() {
    let sb = Sandbox::new();
    // Untrusted: a forwarded address is ignored; the client (loopback, via Docker) is private.
    sb.install(&profile(&sb, "bind = \"127.0.0.1\"", "access = \"lan\""));
    std::fs::write(sb.path("/var/vol/page/www/index.html"), "hello\n").unwrap();
    let addr = format!("127.0.0.1:{}", sb.http_port);
    assert!(answers(&addr));
    let forged = get(&addr, "page.test", "X-Forwarded-For: 8.8.8.8\r\n").unwrap();
    assert_eq!(status(&forged), Some(200), "{forged}");

    // Trusted (every source counts as the proxy here): the forwarded public address is the
    // client, and `lan` refuses it; a forwarded private one passes.
    assert_ok(
        &sb.run(&[
            "install",
            "--profile",
            profile(
                &sb,
                "bind = \"127.0.0.1\"\ntrusted_proxies = [\"0.0.0.0/0\"]",
                "access = \"lan\"",
            )
            .to_str()
            .unwrap(),
        ]),
    );
    let outside = get(&addr, "page.test", "X-Forwarded-For: 8.8.8.8\r\n").unwrap();
    assert_eq!(status(&outside), Some(403), "{outside}");
    let inside = get(&addr, "page.test", "X-Forwarded-For: 192.168.1.20\r\n").unwrap();
    assert_eq!(status(&inside), Some(200), "{inside}");
}

/// GET `path` with a Host header; (status, body), retried while the gateway or the service is
/// still coming up.
fn get_path(port: u16, host: &str, path: &str) -> (u16, String) {
    http_get_path(port, host, path, "", Duration::from_secs(15))
}

#[test]
fn one_host_is_served_by_several_services_by_path_and_static_files_by_the_gateway() {
    let sb = Sandbox::new();
    let httpd = |port: u16| {
        format!("command = [\"httpd\", \"-f\", \"-p\", \"{port}\", \"-h\", \"/www\"]\nvolumes = [\"www:/www\"]")
    };
    let profile = sb.write_profile(&format!(
        "[gateway]\nimage = \"{CADDY_IMAGE}\"\nhttp_port = {}\nbind = \"127.0.0.1\"\nhttps = \"off\"\n\n\
         [[service]]\nname = \"web\"\nimage = \"{BUSYBOX_IMAGE}\"\nport = 8000\ndomains = [\"site.test\"]\n{}\n\
         static = [{{ host = \"site.test\", path = \"/static\", dir = \"static\" }}]\n\n\
         [[service]]\nname = \"graphql\"\nimage = \"{BUSYBOX_IMAGE}\"\nport = 8080\n{}\n\
         routes = [{{ host = \"site.test\", path = \"/graphiql\" }}]\n\n\
         [[service]]\nname = \"firefly\"\nimage = \"{BUSYBOX_IMAGE}\"\nport = 8081\n{}\n\
         routes = [{{ host = \"site.test\", path = \"/firefly\", strip = true }}]\n",
        sb.http_port,
        httpd(8000),
        httpd(8080),
        httpd(8081)
    ));
    sb.install(&profile);
    std::fs::write(sb.path("/var/vol/web/www/index.html"), "web root\n").unwrap();
    std::fs::create_dir_all(sb.path("/var/vol/graphql/www/graphiql")).unwrap();
    std::fs::write(
        sb.path("/var/vol/graphql/www/graphiql/index.html"),
        "graphql console\n",
    )
    .unwrap();
    std::fs::write(sb.path("/var/vol/firefly/www/index.html"), "firefly home\n").unwrap();
    std::fs::write(sb.path("/var/vol/web/static/app.css"), "body{color:red}\n").unwrap();
    let port = sb.http_port;
    assert_eq!(get_path(port, "site.test", "/"), (200, "web root\n".into()));
    // Kept prefix: the service sees /graphiql/.
    assert_eq!(
        get_path(port, "site.test", "/graphiql/"),
        (200, "graphql console\n".into())
    );
    // Stripped prefix: the service sees /.
    assert_eq!(
        get_path(port, "site.test", "/firefly/"),
        (200, "firefly home\n".into())
    );
    // Served by the gateway from /var/vol/web/static, read-only.
    assert_eq!(
        get_path(port, "site.test", "/static/app.css"),
        (200, "body{color:red}\n".into())
    );
    assert!(sb
        .path("/var/vol/gateway/etc/sites/shared-site.test.caddy")
        .exists());
}
