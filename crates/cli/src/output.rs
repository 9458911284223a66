//! Printing: progress bars on stderr (hidden when stderr is not a terminal), JSON reports
//! and tables on stdout.

use crate::args::Result;
use indicatif::{ProgressBar, ProgressStyle};
use sparsewire_stream::report::{InspectReport, TensorReport};

/// A bar counting bytes.
pub fn bytes_bar(what: &str) -> ProgressBar {
    let pb = ProgressBar::new(0);
    pb.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

/// A bar counting items (`unit`).
pub fn count_bar(what: &str, unit: &str) -> ProgressBar {
    let pb = ProgressBar::new(0);
    pb.set_style(
        ProgressStyle::with_template(&format!(
            "{{msg}} [{{bar:30}}] {{pos}}/{{len}} {unit} ({{eta}})"
        ))
        .expect("valid template")
        .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

/// Prints `v` as JSON on stdout. A reader that stops early (`| head`) ends the output
/// quietly instead of a panic.
pub fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    use std::io::Write;
    let text = serde_json::to_string_pretty(v)?;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

/// A file command's report with the process's peak resident memory added (what a user
/// sizing a machine for a big model wants to know, and what `cargo xtask memory` checks).
#[derive(serde::Serialize)]
pub struct WithPeakMemory<'a, T> {
    #[serde(flatten)]
    pub report: &'a T,
    /// High-water mark of resident memory, in bytes (`VmHWM`; `null` off Linux).
    pub peak_memory_bytes: Option<u64>,
}

impl<'a, T> WithPeakMemory<'a, T> {
    pub fn now(report: &'a T) -> Self {
        WithPeakMemory {
            report,
            peak_memory_bytes: peak_memory_bytes(),
        }
    }
}

/// The process's resident-memory high-water mark so far, from /proc/self/status.
pub fn peak_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// `s`, or its last `n - 1` characters after an ellipsis.
pub fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let tail: Vec<char> = s.chars().rev().take(n - 1).collect();
        format!("…{}", tail.into_iter().rev().collect::<String>())
    }
}

/// One row of the inspect table, and the sparsification line under it.
pub fn print_tensor(t: &TensorReport) {
    let planes: Vec<String> = t
        .planes
        .iter()
        .map(|p| {
            let codecs: Vec<String> = p.codecs.iter().map(|(c, n)| format!("{c}x{n}")).collect();
            let bound = p
                .entropy_bound_bytes
                .map(|b| format!(" ({b:.0})"))
                .unwrap_or_default();
            format!("{}: {} {}{bound}", p.plane, codecs.join("+"), p.bytes)
        })
        .collect();
    println!(
        "{:<48} {:>6} {:>16} {:>11} {:>11} {:>6.2}%  {}",
        truncate(&t.name, 48),
        t.dtype.to_string(),
        format!("{:?}", t.shape),
        t.input_bytes,
        t.output_bytes,
        t.ratio * 100.0,
        planes.join("; ")
    );
    if let Some(sp) = &t.sparsification {
        let encs: Vec<String> = sp
            .mask_encodings
            .iter()
            .map(|(e, n)| format!("{e}x{n}"))
            .collect();
        println!(
            "    sparsified: {} {} sparsity {:.4}, rebuild {}, mask {:.3} bits/el (H = {:.3}, {}), rel. error {:.4}{}",
            sp.criterion,
            sp.pattern,
            sp.sparsity,
            sp.reconstruction,
            sp.mask_bits_per_element,
            sp.mask_entropy_bits_per_element,
            encs.join("+"),
            sp.rel_error,
            sp.output_error.map(|e| format!(", output error {e:.4}")).unwrap_or_default()
        );
    }
}

/// The inspect table.
pub fn print_inspect(r: &InspectReport) {
    println!(
        "{:<48} {:>6} {:>16} {:>11} {:>11} {:>7}  planes: codec bytes (order-0 bound)",
        "tensor", "dtype", "shape", "bytes", "stored", "ratio"
    );
    for t in &r.tensors {
        print_tensor(t);
    }
    println!(
        "total: {} -> {} bytes ({:.2}%), preamble, header and trailer {} bytes, format version {}",
        r.input_bytes,
        r.output_bytes,
        r.ratio * 100.0,
        r.header_bytes,
        r.format_version
    );
}
