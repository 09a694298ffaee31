//! The validated model: typed names, domains, ports and layouts. Everything past this module can
//! trust its input; every check here reports the file, line and column of the offending value.

mod backup;
mod gateway;
mod names;
mod service;
mod values;

use std::collections::BTreeMap;
use std::net::IpAddr;

use toml::Spanned;

pub(crate) use backup::{Backup, CopyPlace, CopyTarget, S3Place};
pub(crate) use gateway::{Gateway, HttpsMode};
pub(crate) use names::{Domain, Name};
pub(crate) use service::{Access, BackupMode, Condition, Health, Mount, Restart, Route, Service};
pub(crate) use values::env_name_ok;

use crate::input::layout::{Layout, Layouts};
use crate::input::raw::{RawProfile, RawService};
use crate::input::source::{ConfigError, Source};

/// The image the default gateway runs. Caddy 2.11 answers `caddy reload` inside the container
/// with 403 (caddy#7528), so pi-setup reloads through the admin unix socket instead.
pub(crate) const DEFAULT_GATEWAY_IMAGE: &str = "caddy:2.11.7";
/// The gateway's service name: its host name on the network and its volume directory.
pub(crate) const GATEWAY: &str = "gateway";
/// ObjectNames a service may not take: the gateway's, and the network's.
const RESERVED_NAMES: &[&str] = &[GATEWAY, "intercontainer"];

/// The whole desired appliance.
#[derive(Debug, Clone)]
pub(crate) struct Model {
    /// What the profile says it is for (the shipped ones must say).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) description: Option<String>,
    pub(crate) gateway: Gateway,
    pub(crate) gateway_layout: Layout,
    pub(crate) backup: Backup,
    pub(crate) services: Vec<Service>,
    /// The overlays `install` lays onto the host root, in order (`["base"]` by default).
    pub(crate) overlays: Vec<String>,
}

impl Model {
    pub(crate) fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name.as_str() == name)
    }
}

/// What validation needs to know about the host, read once by the caller (`config`) so that
/// this module stays free of I/O.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HostFacts {
    /// CPUs Docker may hand out: it refuses a `--cpus` above this.
    pub(crate) cpus: usize,
    /// Why systemd would refuse an `OnCalendar=` expression (None: accepted, or no way to ask).
    pub(crate) calendar_error: fn(&str) -> Option<String>,
}

/// Collects every problem of a document instead of stopping at the first.
struct Checker<'a> {
    src: &'a Source,
    errors: Vec<ConfigError>,
}

impl Checker<'_> {
    fn at<T>(&mut self, v: &Spanned<T>, msg: String) {
        self.errors.push(self.src.error_at(v.span(), msg));
    }

    /// `at`, without quoting the line: for values that may be secret.
    fn hidden_at<T>(&mut self, v: &Spanned<T>, msg: String) {
        self.errors.push(ConfigError {
            line_text: None,
            ..self.src.error_at(v.span(), msg)
        });
    }

    fn port(&mut self, v: &Spanned<i64>, what: &str) -> u16 {
        match u16::try_from(*v.get_ref()) {
            Ok(p) if p > 0 => p,
            _ => {
                self.at(
                    v,
                    format!("{what} {} is out of range (1-65535)", v.get_ref()),
                );
                1
            }
        }
    }

    fn count(&mut self, v: Option<&Spanned<i64>>, field: &str, default: u32) -> u32 {
        match v {
            None => default,
            Some(s) => {
                if let Ok(n) = u32::try_from(*s.get_ref()) {
                    n
                } else {
                    self.at(s, format!("{field} must be 0 or more, not {}", s.get_ref()));
                    default
                }
            }
        }
    }
}

/// Validates a profile against the known layouts. All errors of the document come back at once.
///
/// Service files come with their `Source` by reference, and the profile's own services share
/// `src`: a clone of a source per service made validation quadratic in memory (4,000 services
/// in a 361 KB profile took 1.4 GB).
pub(crate) fn build(
    src: &Source,
    raw: RawProfile,
    extra: Vec<(&Source, RawService)>,
    layouts: &Layouts,
    host: &HostFacts,
) -> Result<Model, Vec<ConfigError>> {
    let mut c = Checker {
        src,
        errors: Vec::new(),
    };
    let gateway = gateway::gateway(&mut c, &raw.gateway);
    let bind_span = raw.gateway.bind.as_ref().map(toml::Spanned::span);
    let backup = backup::backup(&mut c, &raw.backup, host);
    let mut errors = std::mem::take(&mut c.errors);
    let gateway_layout = if let Some(l) = layouts.get(GATEWAY) {
        l.clone()
    } else {
        errors.push(src.error("vol-layout 'gateway' is missing"));
        Layout::default()
    };

    let mut services = Vec::new();
    let profile_services = raw.services.into_iter().map(|s| (src, s, false));
    let profile_jobs = raw.jobs.into_iter().map(|s| (src, s, true));
    let files = extra.into_iter().map(|(s, r)| (s, r, false));
    for (s_src, rs, is_job) in profile_services.chain(files).chain(profile_jobs) {
        match service::service(s_src, rs, layouts, host, is_job) {
            Ok(s) => services.push((s_src, s)),
            Err(mut e) => errors.append(&mut e),
        }
    }

    // `lan` access goes by the client's address, and Docker's proxy, which carries IPv6 to
    // the network's IPv4 addresses, hides it: every IPv6 client would come from the network's
    // gateway, a private address. Left out, `bind` is IPv4 only then (`desired`).
    if let (Some(std::net::IpAddr::V6(v6)), Some(span)) = (gateway.bind, bind_span) {
        let lan = services.iter().find(|(_, s)| s.access == Access::Lan);
        if let (false, Some((_, s))) = (v6.is_loopback(), lan) {
            errors.push(src.error_at(
                span,
                format!(
                    "gateway.bind \"{v6}\" publishes on IPv6, where Docker's proxy hides each client's address: service '{}' has access = \"lan\", which every client would pass; bind an IPv4 address, or leave bind out (with a lan service, the gateway then publishes on IPv4 only)",
                    s.name
                ),
            ));
        }
    }

    // Names and domains must be unique across the profile and the service files: a name is
    // also a network alias, and two containers answering to one alias is the classic bug.
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let mut domains: BTreeMap<String, String> = BTreeMap::new();
    for (s_src, s) in &services {
        if let Some(first) = names.insert(s.name.to_string(), s_src.origin.clone()) {
            errors.push(s_src.error(format!(
                "duplicate service name '{}' (already defined in {first})",
                s.name
            )));
        }
        // A host and path go to one place: two services may share a host at other paths.
        let places = s
            .all_routes()
            .into_iter()
            .map(|r| (r.host, r.path, r.span))
            .chain(
                s.statics
                    .iter()
                    .map(|st| (st.host.clone(), st.path.clone(), st.span.clone())),
            );
        for (host, path, span) in places {
            let key = if path == "/" {
                host.to_string()
            } else {
                format!("{host}{path}")
            };
            if let Some(first) = domains.insert(key.clone(), s.name.to_string()) {
                if first == s.name.as_str() {
                    continue;
                }
                let msg = if path == "/" {
                    format!(
                        "duplicate domain '{host}' in service '{}' (already used by service '{first}')",
                        s.name
                    )
                } else {
                    format!(
                        "{key} is routed to service '{}' and to service '{first}'",
                        s.name
                    )
                };
                errors.push(if span.is_empty() {
                    s_src.error(msg)
                } else {
                    s_src.error_at(span, msg)
                });
            }
        }
    }

    // mounts: the other service must be defined.
    for (s_src, s) in &services {
        for m in &s.foreign_mounts {
            if !services.iter().any(|(_, o)| o.name == m.service) {
                errors.push(s_src.error_at(
                    m.span.clone(),
                    format!(
                        "service '{}' mounts a directory of '{}', which is not defined",
                        s.name, m.service
                    ),
                ));
            }
        }
    }

    // depends_on: every name defined, `healthy` only on services with a health check, no cycle.
    for (s_src, s) in &services {
        for d in &s.depends_on {
            match services.iter().find(|(_, o)| o.name == d.name) {
                None => errors.push(s_src.error_at(
                    d.span.clone(),
                    format!(
                        "service '{}' depends on '{}', which is not defined",
                        s.name, d.name
                    ),
                )),
                Some((_, dep)) if d.condition == Condition::Completed && dep.job.is_none() => {
                    errors.push(s_src.error_at(
                        d.span.clone(),
                        format!(
                            "service '{}' waits for '{}' to complete, but '{}' is not a job ([[job]])",
                            s.name, d.name, d.name
                        ),
                    ));
                }
                Some((_, dep)) if d.condition != Condition::Completed && dep.job.is_some() => {
                    errors.push(s_src.error_at(
                        d.span.clone(),
                        format!(
                            "'{}' is a job: wait for it with condition = \"completed\"",
                            d.name
                        ),
                    ));
                }
                Some((_, dep)) if d.condition == Condition::Healthy && dep.health.is_none() => {
                    errors.push(s_src.error_at(
                        d.span.clone(),
                        format!(
                            "service '{}' waits for '{}' to be healthy, but '{}' has no health_cmd",
                            s.name, d.name, d.name
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
    }
    if let Some(cycle) = dependency_cycle(&services) {
        let (s_src, s) = &services[cycle[0]];
        let path: Vec<&str> = cycle.iter().map(|i| services[*i].1.name.as_str()).collect();
        let span = s.depends_on.first().map(|d| d.span.clone()).unwrap_or(0..0);
        errors.push(s_src.error_at(
            span,
            format!(
                "depends_on goes round in a circle: {} -> {}",
                path.join(" -> "),
                path[0]
            ),
        ));
    }

    // Host ports: the gateway's, and those services publish themselves, must not collide
    // (the later container would fail to start, and keep failing on every apply).
    let gateway_ip = gateway.bind.unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let mut taken: Vec<(IpAddr, u16, String)> = vec![(
        gateway_ip,
        gateway.http_port,
        "the gateway (http_port)".into(),
    )];
    if gateway.https != HttpsMode::Off {
        taken.push((
            gateway_ip,
            gateway.https_port,
            "the gateway (https_port)".into(),
        ));
    }
    for (s_src, s) in &services {
        for p in &s.publish {
            let ip: IpAddr = p.host_ip.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
            let clash = taken.iter().find(|(tip, port, _)| {
                *port == p.host_port && (*tip == ip || tip.is_unspecified() || ip.is_unspecified())
            });
            if let Some((_, _, owner)) = clash {
                errors.push(s_src.error(format!(
                    "service '{}' publishes host port {}, already used by {owner}",
                    s.name, p.host_port
                )));
            }
            taken.push((ip, p.host_port, format!("service '{}'", s.name)));
        }
    }

    if errors.is_empty() {
        Ok(Model {
            description: raw.description,
            gateway,
            gateway_layout,
            backup,
            services: services.into_iter().map(|(_, s)| s).collect(),
            overlays: raw.overlays.unwrap_or_else(|| vec!["base".to_string()]),
        })
    } else {
        Err(errors)
    }
}

/// The first cycle in `depends_on`, as indices into `services` in order, if there is one.
fn dependency_cycle(services: &[(&Source, Service)]) -> Option<Vec<usize>> {
    // Depth-first, colouring each service: 0 unseen, 1 on the current path, 2 done.
    fn visit(
        i: usize,
        services: &[(&Source, Service)],
        colour: &mut [u8],
        path: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        colour[i] = 1;
        path.push(i);
        for d in &services[i].1.depends_on {
            let Some(j) = services.iter().position(|(_, o)| o.name == d.name) else {
                continue;
            };
            match colour[j] {
                1 => {
                    let from = path.iter().position(|p| *p == j).unwrap_or(0);
                    return Some(path[from..].to_vec());
                }
                0 => {
                    if let Some(c) = visit(j, services, colour, path) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        path.pop();
        colour[i] = 2;
        None
    }
    let mut colour = vec![0u8; services.len()];
    for i in 0..services.len() {
        if colour[i] == 0 {
            if let Some(c) = visit(i, services, &mut colour, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

impl Model {
    /// The services in the order they are started: each after what it depends on, otherwise
    /// as defined (validation has ruled out cycles).
    pub(crate) fn start_order(&self) -> Vec<&Service> {
        let mut out: Vec<&Service> = Vec::new();
        let mut placed: std::collections::BTreeSet<&Name> = std::collections::BTreeSet::new();
        while out.len() < self.services.len() {
            let before = out.len();
            for s in &self.services {
                if !placed.contains(&s.name)
                    && s.depends_on.iter().all(|d| placed.contains(&d.name))
                {
                    placed.insert(&s.name);
                    out.push(s);
                }
            }
            if out.len() == before {
                // A cycle or a missing name slipped through: keep the rest as defined.
                out.extend(self.services.iter().filter(|s| !placed.contains(&s.name)));
                break;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::names::check_email;
    use super::values::{
        check_health_interval, parse_bytes, parse_duration, parse_duration_ms, parse_publish,
        parse_volume,
    };
    use super::*;

    /// Validates a profile on a 4-CPU host; each error as `line:col: message`, without the
    /// quoted line (`hidden` says whether it was left out).
    fn problems(profile: &str) -> Vec<(String, bool)> {
        let src = Source::new("p.toml", profile);
        let raw = crate::input::raw::parse_profile(&src).expect("the test profile parses");
        let layouts = Layouts::shipped().unwrap();
        match build(
            &src,
            raw,
            Vec::new(),
            &layouts,
            &HostFacts {
                cpus: 4,
                calendar_error: |_| None,
            },
        ) {
            Ok(_) => Vec::new(),
            Err(errors) => errors
                .into_iter()
                .map(|e| {
                    let at = format!("{}:{}: {}", e.line.unwrap(), e.col.unwrap(), e.message);
                    (at, e.line_text.is_none())
                })
                .collect(),
        }
    }

    #[test]
    fn service_values_docker_would_refuse_are_refused_with_their_position() {
        let table: &[(&str, &str)] = &[
            ("cpus = 1000", "4:8: cpus 1000 is out of range: 0.01 to 4 (the CPUs this host has)"),
            ("cpus = 0.001", "4:8: cpus 0.001 is out of range: 0.01 to 4 (the CPUs this host has)"),
            ("cpus = nan", "4:8: cpus NaN is out of range: 0.01 to 4 (the CPUs this host has)"),
            ("cpus = inf", "4:8: cpus inf is out of range: 0.01 to 4 (the CPUs this host has)"),
            ("cpus = -1", "4:8: cpus -1 is out of range: 0.01 to 4 (the CPUs this host has)"),
            ("memory = \"5m\"", "4:10: memory \"5m\" is out of range: 6m to 1024g"),
            ("memory = \"2048g\"", "4:10: memory \"2048g\" is out of range: 6m to 1024g"),
            (
                "memory = \"99999999999999999999999g\"",
                "4:10: memory \"99999999999999999999999g\" is out of range: 6m to 1024g",
            ),
            ("memory = \"inf\"", "4:10: memory \"inf\" must be bytes or a size like 512m or 2g"),
            ("memory = \"1e300\"", "4:10: memory \"1e300\" must be bytes or a size like 512m or 2g"),
            ("memory = \"-5m\"", "4:10: memory \"-5m\" must be bytes or a size like 512m or 2g"),
            (
                "health_cmd = \"true\"\nhealth_interval = \"18446744074s\"",
                "5:19: health_interval \"18446744074s\" is out of range: 1ms to 24h",
            ),
            (
                "health_cmd = \"true\"\nhealth_interval = \"99999999999999999999999h\"",
                "5:19: health_interval \"99999999999999999999999h\" is out of range: 1ms to 24h",
            ),
            (
                "health_cmd = \"true\"\nhealth_interval = \"25h\"",
                "5:19: health_interval \"25h\" is out of range: 1ms to 24h",
            ),
            (
                "health_cmd = \"true\"\nhealth_interval = \"0s\"",
                "5:19: health_interval \"0s\" is out of range: 1ms to 24h",
            ),
            (
                "health_cmd = \"true\"\nhealth_interval = \"1m3\"",
                "5:19: health_interval \"1m3\" must be a duration like 500ms, 1.5s, 30s, 1m or 1m30s",
            ),
            (
                "volumes = [\".:/\"]",
                "4:12: invalid volume \".:/\": container path \"/\" is the container's root; Docker cannot mount there (use a directory such as /data)",
            ),
            (
                "volumes = [\"data://.\"]",
                "4:12: invalid volume \"data://.\": container path \"//.\" is the container's root; Docker cannot mount there (use a directory such as /data)",
            ),
            ("volumes = [\"a:/data/\", \"b:/./data\"]", "4:24: two volumes are mounted at /data"),
            (
                "health_cmd = \"true\\u0000\"",
                "4:14: health_cmd contains a NUL byte, which Docker refuses",
            ),
        ];
        for (field, expected) in table {
            let profile = format!("[[service]]\nname = \"web\"\nimage = \"busybox:1\"\n{field}\n");
            let got: Vec<String> = problems(&profile).into_iter().map(|(m, _)| m).collect();
            assert_eq!(got, vec![expected.to_string()], "for {field}");
        }
    }

    #[test]
    fn a_nul_in_an_env_value_names_the_key_and_never_shows_the_value() {
        let got = problems(
            "[[service]]\nname = \"web\"\nimage = \"busybox:1\"\nenv = { TOKEN = \"s3cr3t\\u0000x\" }\n",
        );
        assert_eq!(
            got,
            vec![(
                "4:17: env TOKEN: the value contains a NUL byte, which Docker refuses (the value is not shown)".to_string(),
                true
            )]
        );
    }

    #[test]
    fn gateway_values_are_checked_before_they_reach_its_config() {
        let table: &[(&str, &str)] = &[
            ("email = \"\\\"@x.com\"", "2:9: gateway.email \"\\\"@x.com\" is not an email address: the part before '@' contains '\"'; use only A-Z a-z 0-9 . _ % + -"),
            ("email = 'a@x.com\\'", "2:9: gateway.email \"a@x.com\\\\\" is not an email address: the domain \"x.com\\\\\" contains '\\\\'; use only a-z, 0-9, '-' and '.'"),
            ("email = \"<<EOF@x.com\"", "2:9: gateway.email \"<<EOF@x.com\" is not an email address: the part before '@' contains '<'; use only A-Z a-z 0-9 . _ % + -"),
            ("email = \"me@x.com}\"", "2:9: gateway.email \"me@x.com}\" is not an email address: the domain \"x.com}\" contains '}'; use only a-z, 0-9, '-' and '.'"),
            ("email = \"me @x.com\"", "2:9: gateway.email \"me @x.com\" is not an email address: the part before '@' contains ' '; use only A-Z a-z 0-9 . _ % + -"),
            ("email = \"me@x@y.com\"", "2:9: gateway.email \"me@x@y.com\" is not an email address: the domain \"x@y.com\" contains '@'; use only a-z, 0-9, '-' and '.'"),
            ("email = \"me@localhost\"", "2:9: gateway.email \"me@localhost\" is not an email address: the domain \"localhost\" has no '.'"),
            ("email = \"me.example.com\"", "2:9: gateway.email \"me.example.com\" is not an email address: it has no '@'"),
            ("email = \".me@x.com\"", "2:9: gateway.email \".me@x.com\" is not an email address: the part before '@' must not start or end with '.', or hold '..'"),
            (
                "maintenance_page = \"/../etc/shadow\"",
                "2:20: gateway.maintenance_page \"/../etc/shadow\" must be an absolute path without '..'",
            ),
            (
                "maintenance_page = \"page.html\"",
                "2:20: gateway.maintenance_page \"page.html\" must be an absolute path without '..'",
            ),
        ];
        for (field, expected) in table {
            let got: Vec<String> = problems(&format!("[gateway]\n{field}\n"))
                .into_iter()
                .map(|(m, _)| m)
                .collect();
            assert_eq!(got, vec![expected.to_string()], "for {field}");
        }
        for ok in [
            "me@example.com",
            "First.Last+pi@Mail.Example.ORG",
            "a_b%c-d@x-y.home.arpa",
        ] {
            assert!(check_email(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn names_follow_dns_label_rules() {
        assert!(Name::parse("web-1").is_ok());
        assert_eq!(Name::parse("Web").unwrap_err(), "must be lower case");
        assert!(Name::parse("../x").unwrap_err().contains("'/'"));
        assert!(Name::parse("a..b").unwrap_err().contains("'..'"));
        assert!(Name::parse("-a").is_err());
        assert!(Name::parse("a_b").is_err());
        assert!(Name::parse(&"a".repeat(64)).is_err());
        assert!(Name::parse("").is_err());
    }

    #[test]
    fn domains() {
        assert!(Domain::parse("cloud.example.com").is_ok());
        assert!(Domain::parse("nas").is_ok());
        assert!(Domain::parse("a..b").is_err());
        assert!(Domain::parse("http://x.com").is_err());
        assert!(Domain::parse("x.com:80").is_err());
        assert!(Domain::parse("X.com").is_err());
        assert!(Domain::parse("a_b.com").is_err());
        assert!(Domain::parse("nas.local").unwrap().is_lan_only());
        assert!(!Domain::parse("cloud.example.com").unwrap().is_lan_only());
    }

    #[test]
    fn sizes_durations_and_published_ports() {
        assert_eq!(parse_bytes("512m"), Some(512 * 1024 * 1024));
        assert_eq!(parse_bytes("1.5g"), Some(1610612736));
        assert_eq!(parse_bytes("100"), Some(100));
        assert_eq!(parse_bytes("lots"), None);
        assert_eq!(parse_bytes("0.5k"), Some(512));
        assert_eq!(parse_bytes("99999999999999999999g"), Some(i64::MAX));
        assert_eq!(parse_bytes("9223372036854775807"), Some(i64::MAX));
        for bad in [
            "nan", "inf", "1e3", "0", ".5g", "5.g", "-1", "", "g", "1.2.3m",
        ] {
            assert_eq!(parse_bytes(bad), None, "{bad:?}");
        }
        assert_eq!(parse_duration("18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_duration("18446744073709551615m"), None, "overflows");
        assert_eq!(parse_duration("5124095576030432h"), None, "overflows");
        assert_eq!(parse_duration(""), None);
        assert_eq!(check_health_interval("24h"), Ok(86_400_000));
        assert_eq!(check_health_interval("1s"), Ok(1000));
        // Health checks take milliseconds and decimals (Docker counts in nanoseconds).
        for (text, ms) in [
            ("500ms", Some(500)),
            ("1.5s", Some(1500)),
            ("1m30s", Some(90_000)),
            ("1s250ms", Some(1250)),
            (".25s", Some(250)),
            ("0.001s", Some(1)),
            ("1.5m", Some(90_000)),
            ("45", Some(45_000)),
            ("1.0005s", None),
            ("1.5ms", None),
            ("1..5s", None),
            (".s", None),
            ("5 s", None),
            ("1.5", None),
        ] {
            assert_eq!(parse_duration_ms(text), ms, "{text}");
        }
        assert_eq!(check_health_interval("250ms"), Ok(250));
        assert_eq!(
            check_health_interval("0ms"),
            Err("health_interval \"0ms\" is out of range: 1ms to 24h".into())
        );
        assert_eq!(parse_duration("30s"), Some(30));
        assert_eq!(parse_duration("1m30s"), Some(90));
        assert_eq!(parse_duration("45"), Some(45));
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(parse_duration("1m3"), None);
        let p = parse_publish("127.0.0.1:5432:5432").unwrap();
        assert_eq!(
            (p.host_ip.as_str(), p.host_port, p.container_port),
            ("127.0.0.1", 5432, 5432)
        );
        assert_eq!(parse_publish("8443:443").unwrap().host_ip, "0.0.0.0");
        assert!(parse_publish("x:443").is_err());
        assert!(parse_publish("443").is_err());
    }

    #[test]
    fn volumes_cannot_escape() {
        assert_eq!(parse_volume("data:/data").unwrap().sub, "data");
        assert!(parse_volume("data:/data:ro").unwrap().read_only);
        assert_eq!(parse_volume(".:/srv").unwrap().sub, ".");
        assert!(parse_volume("../etc:/x").is_err());
        assert!(parse_volume("a/../../x:/x").is_err());
        assert!(parse_volume("/etc:/x").is_err());
        assert!(parse_volume("data:relative").is_err());
        assert!(parse_volume("data").is_err());
    }
}
