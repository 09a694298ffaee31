//! The `[gateway]` table: image, ports, bind address, HTTPS mode, ACME email, maintenance page.

use std::net::IpAddr;

use toml::Spanned;

use crate::input::raw::RawGateway;
use crate::model::names::check_email;
use crate::model::service::image_ref;
use crate::model::Checker;
use crate::model::DEFAULT_GATEWAY_IMAGE;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum HttpsMode {
    Auto,
    Internal,
    Off,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Gateway {
    pub(crate) image: String,
    /// Host path of a custom maintenance page (read by `config`).
    pub(crate) maintenance_page: Option<String>,
    /// Where the profile sets it, for errors found while reading it.
    pub(crate) maintenance_page_span: Option<std::ops::Range<usize>>,
    /// Its contents, once read; None means the built-in page.
    pub(crate) maintenance_html: Option<String>,
    pub(crate) http_port: u16,
    pub(crate) https_port: u16,
    /// None: every address, IPv4 and IPv6 (Docker publishes on both).
    pub(crate) bind: Option<IpAddr>,
    pub(crate) https: HttpsMode,
    pub(crate) email: Option<String>,
    /// Normalised CIDR ranges (`203.0.113.0/24`, `2001:db8::/32`).
    pub(crate) trusted_proxies: Vec<String>,
    pub(crate) compress: bool,
}

pub(super) fn gateway(c: &mut Checker, g: &RawGateway) -> Gateway {
    let image = match &g.image {
        None => DEFAULT_GATEWAY_IMAGE.to_string(),
        Some(i) => image_ref(c, i),
    };
    let http_port = g
        .http_port
        .as_ref()
        .map_or(80, |p| c.port(p, "gateway.http_port"));
    let https_port = g
        .https_port
        .as_ref()
        .map_or(443, |p| c.port(p, "gateway.https_port"));
    let https_off = g.https.as_ref().is_some_and(|h| h.get_ref() == "off");
    if http_port == https_port && !https_off {
        let msg = format!("gateway.http_port and gateway.https_port are both {http_port}");
        match g.https_port.as_ref().or(g.http_port.as_ref()) {
            Some(p) => c.at(p, msg),
            None => c.errors.push(c.src.error(msg)),
        }
    }
    let bind = g.bind.as_ref().and_then(|b| {
        let ip = b.get_ref().parse::<IpAddr>().ok();
        if ip.is_none() {
            c.at(
                b,
                format!(
                    "gateway.bind {:?} is not an IP address (IPv4 or IPv6; leave it out for all of both)",
                    b.get_ref()
                ),
            );
        }
        ip
    });
    let mut trusted_proxies = Vec::new();
    for t in &g.trusted_proxies {
        match parse_cidr(t.get_ref()) {
            Ok(cidr) => trusted_proxies.push(cidr),
            Err(why) => c.at(
                t,
                format!("gateway.trusted_proxies {:?}: {why}", t.get_ref()),
            ),
        }
    }
    let https = match g.https.as_ref().map(|h| (h, h.get_ref().as_str())) {
        None => HttpsMode::Auto,
        Some((_, "auto")) => HttpsMode::Auto,
        Some((_, "internal")) => HttpsMode::Internal,
        Some((_, "off")) => HttpsMode::Off,
        Some((h, other)) => {
            c.at(
                h,
                format!("gateway.https {other:?} is not one of auto, internal, off"),
            );
            HttpsMode::Auto
        }
    };
    let maintenance_page = g.maintenance_page.as_ref().map(|m| {
        let v = m.get_ref();
        // It is read under --root (by `config`): `..` would step out of it.
        if !v.starts_with('/') || v.split('/').any(|p| p == "..") {
            c.at(
                m,
                format!("gateway.maintenance_page {v:?} must be an absolute path without '..'"),
            );
        } else if v.chars().any(char::is_control) {
            c.at(
                m,
                format!("gateway.maintenance_page {v:?} contains a control character"),
            );
        }
        v.clone()
    });
    let email = g.email.as_ref().map(|e| {
        let v = e.get_ref();
        if let Err(why) = check_email(v) {
            c.at(
                e,
                format!("gateway.email {v:?} is not an email address: {why}"),
            );
        }
        v.clone()
    });
    Gateway {
        image,
        maintenance_page,
        maintenance_page_span: g.maintenance_page.as_ref().map(Spanned::span),
        maintenance_html: None,
        http_port,
        https_port,
        bind,
        https,
        email,
        trusted_proxies,
        compress: g.compress.as_ref().is_none_or(|c| *c.get_ref()),
    }
}

/// `a.b.c.d/n`, `x::/n` or a bare address (a /32 or /128), as Caddy's `trusted_proxies` takes
/// them; the address is printed back by Rust, so nothing but digits, dots, colons and hex
/// reaches the gateway's config.
pub(crate) fn parse_cidr(s: &str) -> Result<String, String> {
    let (addr, bits) = match s.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| "is not an IP address or CIDR range".to_string())?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let bits = match bits {
        None => max,
        Some(b) => b
            .parse::<u8>()
            .ok()
            .filter(|n| *n <= max)
            .ok_or_else(|| format!("the prefix length must be 0-{max}"))?,
    };
    Ok(format!("{ip}/{bits}"))
}
