//! What a benchmark run produces: `results.json` (every figure), `results.md` (the table, each
//! figure beside its peer's with the ratio, and the machine) and `latency.png` (latency
//! distributions, lockbox against its peers).

use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use super::load::Measure;

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Figure {
    Latency(Measure),
    /// A single value; `lower_is_better` decides which way the ratio points.
    Scalar {
        value: f64,
        unit: &'static str,
        lower_is_better: bool,
    },
}

impl Figure {
    pub fn scalar(value: f64, unit: &'static str) -> Figure {
        Figure::Scalar { value, unit, lower_is_better: true }
    }

    fn cell(&self) -> String {
        match self {
            Figure::Latency(m) => format!("{:.0}/s · p50 {} · p99 {} · p99.9 {}", m.ops_per_sec, ms(m.p50_ms), ms(m.p99_ms), ms(m.p999_ms)),
            Figure::Scalar { value, unit, .. } => format!("{} {unit}", num(*value)),
        }
    }
}

fn ms(v: f64) -> String {
    if v < 0.1 {
        format!("{:.1} µs", v * 1000.0)
    } else if v < 1.0 {
        format!("{v:.2} ms")
    } else if v < 100.0 {
        format!("{v:.1} ms")
    } else {
        format!("{v:.0} ms")
    }
}

fn num(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Peer {
    pub name: String,
    pub figure: Figure,
    /// False for a published figure quoted for context rather than measured in this run.
    pub measured: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct Goal {
    pub text: String,
    pub met: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub suite: &'static str,
    pub case: String,
    pub lockbox: Figure,
    pub peer: Option<Peer>,
    pub goal: Option<Goal>,
}

impl Row {
    pub fn new(suite: &'static str, case: impl Into<String>, lockbox: Figure) -> Row {
        Row { suite, case: case.into(), lockbox, peer: None, goal: None }
    }

    pub fn peer(mut self, name: impl Into<String>, figure: Figure) -> Row {
        self.peer = Some(Peer { name: name.into(), figure, measured: true });
        self
    }

    pub fn anchor(mut self, name: impl Into<String>, figure: Figure) -> Row {
        self.peer = Some(Peer { name: name.into(), figure, measured: false });
        self
    }

    pub fn goal(mut self, text: impl Into<String>, met: bool) -> Row {
        self.goal = Some(Goal { text: text.into(), met });
        self
    }

    /// How many times better lockbox is than the peer (throughput for latency figures).
    pub fn ratio(&self) -> Option<f64> {
        let peer = self.peer.as_ref()?;
        match (&self.lockbox, &peer.figure) {
            (Figure::Latency(a), Figure::Latency(b)) => Some(a.ops_per_sec / b.ops_per_sec.max(1e-9)),
            (Figure::Scalar { value: a, lower_is_better, .. }, Figure::Scalar { value: b, .. }) => {
                Some(if *lower_is_better { b / a.max(1e-12) } else { a / b.max(1e-12) })
            }
            _ => None,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu: String,
    pub kernel: String,
    pub memory_gib: f64,
}

impl Machine {
    pub fn read() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_string()))
            .unwrap_or_else(|| "unknown".into());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let kib: f64 = meminfo.lines().find_map(|l| l.strip_prefix("MemTotal:")).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap_or(0.0);
        Machine {
            cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            cpu,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string(),
            memory_gib: (kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Results {
    pub started: String,
    pub smoke: bool,
    pub machine: Machine,
    pub versions: Vec<(String, String)>,
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
}

impl Results {
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        out.push_str(&format!(
            "Measured {}{} on {} cores ({}), {} GiB RAM, Linux {}.\n\nVersions: {}.\n\n",
            self.started,
            if self.smoke { " (smoke size: not a measurement)" } else { "" },
            m.cores,
            m.cpu,
            m.memory_gib,
            m.kernel,
            self.versions.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
        ));
        out.push_str("| Suite | Case | lockbox | Peer | Peer figure | Ratio | Goal |\n|---|---|---|---|---|---|---|\n");
        for r in &self.rows {
            let (peer, figure) = match &r.peer {
                Some(p) => (if p.measured { p.name.clone() } else { format!("{} (reference, not measured)", p.name) }, p.figure.cell()),
                None => ("—".into(), "—".into()),
            };
            let ratio = r.ratio().map(|x| format!("{x:.2}×")).unwrap_or_else(|| "—".into());
            let goal = r.goal.as_ref().map(|g| format!("{} {}", if g.met { "✅ met:" } else { "❌ missed:" }, g.text)).unwrap_or_default();
            out.push_str(&format!("| {} | {} | {} | {peer} | {figure} | {ratio} | {goal} |\n", r.suite, r.case, r.lockbox.cell()));
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for n in &self.notes {
                out.push_str(&format!("- {n}\n"));
            }
        }
        out
    }

    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("results.json"), serde_json::to_vec_pretty(self)?)?;
        std::fs::write(dir.join("results.md"), self.markdown())?;
        Ok(())
    }
}
