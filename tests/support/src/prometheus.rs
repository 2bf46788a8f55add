//! A real Prometheus server for the metrics tests: our own instance (own config, port and
//! storage, killed on drop), never a system service. Also `promtool check metrics` as a lint of
//! exposition text.

use std::{
    collections::BTreeMap,
    fs,
    io::Write as _,
    net::{SocketAddr, TcpListener},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// Where Debian's `prometheus` package puts the binaries (`cargo xtask setup` installs it).
const PROMETHEUS: &str = "/usr/bin/prometheus";
const PROMTOOL: &str = "/usr/bin/promtool";

/// What went wrong starting or asking Prometheus.
#[derive(Debug)]
pub struct PrometheusError(pub String);

impl std::fmt::Display for PrometheusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PrometheusError {}

pub type Result<T> = std::result::Result<T, PrometheusError>;

/// One sample of a query result: its labels (`__name__` included) and value.
pub type Sample = (BTreeMap<String, String>, f64);

fn err(msg: impl Into<String>) -> PrometheusError {
    PrometheusError(msg.into())
}

/// One Prometheus server scraping one target every second.
pub struct Prometheus {
    child: Child,
    /// Config, TSDB and log; removed on drop.
    dir: PathBuf,
    /// `http://127.0.0.1:PORT`.
    base: String,
}

/// Fails with a message naming what to install when a binary is missing.
fn require_binary(path: &str) -> Result<()> {
    if fs::metadata(path).is_ok_and(|m| m.is_file()) {
        Ok(())
    } else {
        Err(err(format!(
            "{path} is missing: install Debian's `prometheus` package (`cargo xtask setup` does)"
        )))
    }
}

/// A port nobody listens on right now (bound, then released).
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| err(format!("no free port: {e}")))?;
    Ok(l.local_addr().map_err(|e| err(e.to_string()))?.port())
}

impl Prometheus {
    /// Writes a config scraping `target` every second, starts Prometheus on a free loopback
    /// port and waits until `/-/ready` answers 200 (at most 30 s).
    pub fn start(target: SocketAddr) -> Result<Prometheus> {
        require_binary(PROMETHEUS)?;
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tt-tracer-prometheus-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("data")).map_err(|e| err(format!("{}: {e}", dir.display())))?;
        let config = dir.join("prometheus.yml");
        fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: tt-tracer\n    scrape_interval: 1s\n    \
                 scrape_timeout: 1s\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .map_err(|e| err(format!("{}: {e}", config.display())))?;
        let port = free_port()?;
        let log = fs::File::create(dir.join("prometheus.log")).map_err(|e| err(e.to_string()))?;
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| err(e.to_string()))?)
            .stderr(log)
            .spawn()
            .map_err(|e| err(format!("cannot start {PROMETHEUS}: {e}")))?;
        let mut p = Prometheus {
            child,
            dir,
            base: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(st)) = p.child.try_wait() {
                return Err(err(format!(
                    "prometheus exited ({st}) before it was ready: {}",
                    p.log()
                )));
            }
            if ureq::get(format!("{}/-/ready", p.base)).call().is_ok() {
                return Ok(p);
            }
            if Instant::now() > deadline {
                return Err(err(format!("prometheus not ready after 30 s: {}", p.log())));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Prometheus's own output so far (for failure messages).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// `http://127.0.0.1:PORT`, Prometheus's own address.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// An instant query (`/api/v1/query`): each sample's labels (`__name__` included) and value.
    /// Only vector and scalar results are accepted.
    pub fn query(&self, promql: &str) -> Result<Vec<Sample>> {
        let body = ureq::get(format!("{}/api/v1/query", self.base))
            .query("query", promql)
            .call()
            .map_err(|e| err(format!("query {promql:?}: {e}")))?
            .body_mut()
            .read_to_string()
            .map_err(|e| err(format!("query {promql:?}: {e}")))?;
        parse_query_response(&body).map_err(|e| err(format!("query {promql:?}: {e}: {body}")))
    }

    /// Repeats `query` until `accept` is true of its result (then returns it) or `timeout`
    /// passes (then fails with the last result).
    pub fn wait_for(
        &self,
        promql: &str,
        accept: impl Fn(&[Sample]) -> bool,
        timeout: Duration,
    ) -> Result<Vec<Sample>> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = self.query(promql)?;
            if accept(&last) {
                return Ok(last);
            }
            if Instant::now() > deadline {
                let targets = ureq::get(format!("{}/api/v1/targets", self.base))
                    .call()
                    .ok()
                    .and_then(|mut r| r.body_mut().read_to_string().ok())
                    .unwrap_or_default();
                return Err(err(format!(
                    "{promql:?} still {last:?} after {timeout:?}; targets: {targets}"
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// One scrape of `target` by hand: the exposition text `GET http://TARGET/metrics` answers
/// (for [`promtool_check_metrics`], or to see what Prometheus will ingest).
pub fn scrape(target: SocketAddr) -> Result<String> {
    ureq::get(format!("http://{target}/metrics"))
        .call()
        .map_err(|e| err(format!("GET http://{target}/metrics: {e}")))?
        .body_mut()
        .read_to_string()
        .map_err(|e| err(format!("GET http://{target}/metrics: {e}")))
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The `data.result` of a `/api/v1/query` answer.
fn parse_query_response(body: &str) -> std::result::Result<Vec<Sample>, String> {
    let v: serde_json::Value = serde_json::from_str(body).map_err(|e| e.to_string())?;
    if v["status"] != "success" {
        return Err(format!("status {}", v["status"]));
    }
    let value = |pair: &serde_json::Value| -> std::result::Result<f64, String> {
        pair.get(1)
            .and_then(|s| s.as_str())
            .ok_or("no value")?
            .parse::<f64>()
            .map_err(|e| e.to_string())
    };
    match v["data"]["resultType"].as_str() {
        Some("vector") => v["data"]["result"]
            .as_array()
            .ok_or("no result")?
            .iter()
            .map(|s| {
                let labels = s["metric"]
                    .as_object()
                    .ok_or("no metric")?
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect();
                Ok((labels, value(&s["value"])?))
            })
            .collect(),
        Some("scalar") => Ok(vec![(BTreeMap::new(), value(&v["data"]["result"])?)]),
        other => Err(format!("unsupported result type {other:?}")),
    }
}

/// OpenMetrics text as the Prometheus text format (0.0.4) says the same: a counter family `x`
/// (samples `x_total`) is declared as `x_total`; `# UNIT` and `# EOF` go. Debian's promtool
/// (2.42) parses only the 0.0.4 format, where an OpenMetrics counter's samples would look like a
/// family without HELP or TYPE.
pub fn openmetrics_as_text_format(exposition: &str) -> String {
    let counters: std::collections::BTreeSet<&str> = exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::new();
    for line in exposition.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let declared = ["# HELP ", "# TYPE "].into_iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(declared.as_deref().unwrap_or(line).trim_end());
        out.push('\n');
    }
    out
}

/// `promtool check metrics` on `exposition` (its stdin): Ok, or promtool's complaints.
/// OpenMetrics text (ending in `# EOF`) is first put in the text format promtool reads
/// ([`openmetrics_as_text_format`]).
pub fn promtool_check_metrics(exposition: &str) -> std::result::Result<(), String> {
    require_binary(PROMTOOL).map_err(|e| e.0)?;
    let converted;
    let exposition = if exposition.trim_end().ends_with("# EOF") {
        converted = openmetrics_as_text_format(exposition);
        &converted
    } else {
        exposition
    };
    let mut child = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {PROMTOOL}: {e}"))?;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(exposition.as_bytes())
        .map_err(|e| format!("writing to promtool: {e}"))?;
    let out = child
        .wait_with_output()
        .map_err(|e| format!("promtool: {e}"))?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && said.trim().is_empty() {
        Ok(())
    } else {
        Err(format!("promtool check metrics ({}): {said}", out.status))
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::{BufRead as _, BufReader},
        net::TcpListener,
    };

    use super::*;

    /// Serves `text` as the answer to every request, forever (the thread dies with the test).
    fn serve_static(text: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                // Read the request head; the answer does not depend on it.
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    line.clear();
                }
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                );
            }
        });
        addr
    }

    const STATIC: &str = "# HELP harness_check_value A value the harness test serves.\n\
                          # TYPE harness_check_value gauge\n\
                          harness_check_value{chip=\"3\"} 42.5\n";

    #[test]
    fn prometheus_scrapes_a_static_target_and_the_query_returns_its_value() {
        let target = serve_static(STATIC);
        let prom = Prometheus::start(target).unwrap_or_else(|e| panic!("{e}"));
        let got = prom
            .wait_for(
                "harness_check_value",
                |r| !r.is_empty(),
                Duration::from_secs(20),
            )
            .unwrap_or_else(|e| panic!("{e}\nprometheus log:\n{}", prom.log()));
        assert_eq!(got.len(), 1, "{got:?}");
        let (labels, value) = &got[0];
        assert_eq!(value, &42.5);
        assert_eq!(labels["chip"], "3");
        assert_eq!(labels["job"], "tt-tracer");
        assert_eq!(labels["instance"], target.to_string());
        assert_eq!(labels["__name__"], "harness_check_value");
        // Prometheus's own health of the target agrees.
        let up = prom.query("up").unwrap();
        assert_eq!(up.len(), 1);
        assert_eq!(up[0].1, 1.0);
    }

    #[test]
    fn promtool_accepts_good_text_and_names_what_is_wrong_in_bad() {
        promtool_check_metrics(STATIC).unwrap();
        // A counter without the _total suffix: promtool's lint says so.
        let bad = "# HELP requests Requests.\n# TYPE requests counter\nrequests 1\n";
        let e = promtool_check_metrics(bad).unwrap_err();
        assert!(e.contains("_total"), "{e}");
    }

    #[test]
    fn openmetrics_counters_become_text_format_families() {
        let om = "# HELP x_ops Ops.\n# TYPE x_ops counter\nx_ops_total{a=\"1\"} 3\n\
                  # HELP x_bytes Bytes.\n# TYPE x_bytes gauge\n# UNIT x_bytes bytes\nx_bytes 2\n# EOF\n";
        assert_eq!(
            openmetrics_as_text_format(om),
            "# HELP x_ops_total Ops.\n# TYPE x_ops_total counter\nx_ops_total{a=\"1\"} 3\n\
             # HELP x_bytes Bytes.\n# TYPE x_bytes gauge\nx_bytes 2\n"
        );
        promtool_check_metrics(om).unwrap();
    }

    #[test]
    fn query_responses_parse() {
        let v = parse_query_response(
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"x","a":"b"},"value":[1.5,"7"]}]}}"#,
        )
        .unwrap();
        assert_eq!(v[0].0["a"], "b");
        assert_eq!(v[0].1, 7.0);
        let s = parse_query_response(
            r#"{"status":"success","data":{"resultType":"scalar","result":[1.5,"2"]}}"#,
        )
        .unwrap();
        assert_eq!(s[0].1, 2.0);
    }
}
