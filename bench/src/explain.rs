//! Where a call's time goes, statement by statement: `auto_explain` logs
//! every statement the call runs (`log_nested_statements`, the statements
//! the extension runs through SPI included) to the client as notices, in
//! JSON; this module reads them back and adds them up per statement text.
//!
//! `log_analyze` is on with `log_timing` off: each statement's duration and
//! the rows every plan node produced are known without timing each node.
//! auto_explain times execution only; `log_parser_stats` and
//! `log_planner_stats`, sent to the client too (`client_min_messages =
//! log`), give the time spent parsing and planning, which is added to the
//! statement executed next. The instrumentation makes the call somewhat
//! slower than in the timed samples; the shares are what matters.

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// Session settings that make `auto_explain` report to the client. Nothing
/// is logged until `auto_explain.log_min_duration` is set to 0.
pub const SETUP: &str = "LOAD 'auto_explain'; \
     SET auto_explain.log_min_duration = -1; \
     SET auto_explain.log_analyze = on; \
     SET auto_explain.log_timing = off; \
     SET auto_explain.log_buffers = on; \
     SET auto_explain.log_format = json; \
     SET auto_explain.log_verbose = on; \
     SET auto_explain.log_nested_statements = on; \
     SET auto_explain.log_level = notice; \
     SET client_min_messages = notice";
pub const ON: &str = "SET auto_explain.log_min_duration = 0; SET client_min_messages = log; \
     SET log_parser_stats = on; SET log_planner_stats = on";
pub const OFF: &str = "SET log_parser_stats = off; SET log_planner_stats = off; \
     SET client_min_messages = notice; SET auto_explain.log_min_duration = -1";

/// The messages of `log_parser_stats` and `log_planner_stats`.
const STATS: [&str; 4] = [
    "PARSER STATISTICS",
    "PARSE ANALYSIS STATISTICS",
    "REWRITER STATISTICS",
    "PLANNER STATISTICS",
];

/// A table read from start to end by one statement.
#[derive(Clone, Debug, PartialEq)]
pub struct SeqScan {
    pub table: String,
    /// Rows read (returned and removed by the filter), all loops.
    pub rows: f64,
}

/// One statement as logged.
#[derive(Clone, Debug)]
pub struct Logged {
    pub text: String,
    /// Execution.
    pub ms: f64,
    /// Parsing and planning logged since the statement before.
    pub prep_ms: f64,
    pub seq_scans: Vec<SeqScan>,
    /// Shared buffers hit and read by the whole plan.
    pub blocks: f64,
}

/// The statements of one call, the same text added up.
pub struct Statement {
    pub text: String,
    pub calls: u32,
    pub ms: f64,
    pub prep_ms: f64,
    pub seq_scans: Vec<SeqScan>,
    pub blocks: f64,
}

/// The statements among the notices of one call, each with the parsing and
/// planning reported before it.
pub fn parse_notices(messages: &[String]) -> Vec<Logged> {
    let mut out = Vec::new();
    let mut prep_ms = 0.0;
    for m in messages {
        if STATS.iter().any(|s| m.starts_with(s)) {
            prep_ms += stats_elapsed_ms(m).unwrap_or(0.0);
        } else if let Some(mut l) = parse_notice(m) {
            l.prep_ms = prep_ms;
            prep_ms = 0.0;
            out.push(l);
        }
    }
    out
}

/// `! 0.000000 s user, 0.000046 s system, 0.000046 s elapsed` -> 0.046.
fn stats_elapsed_ms(message: &str) -> Option<f64> {
    let line = message.lines().find(|l| l.contains("s elapsed"))?;
    let before = line.split(" s elapsed").next()?;
    let secs: f64 = before.rsplit([' ', ',']).next()?.parse().ok()?;
    Some(secs * 1000.0)
}

/// `duration: 1.234 ms  plan:\n{json}` -> the statement.
pub fn parse_notice(message: &str) -> Option<Logged> {
    let rest = message.trim_start().strip_prefix("duration:")?;
    let (ms, plan) = rest.split_once("ms")?;
    let ms: f64 = ms.trim().parse().ok()?;
    let json_start = plan.find('{')?;
    let v: Value = serde_json::from_str(&plan[json_start..]).ok()?;
    let text = v.get("Query Text")?.as_str()?.to_string();
    let mut seq_scans = Vec::new();
    let mut blocks = 0.0;
    if let Some(p) = v.get("Plan") {
        blocks = num(p, "Shared Hit Blocks") + num(p, "Shared Read Blocks");
        walk(p, &mut seq_scans);
    }
    Some(Logged {
        text,
        ms,
        prep_ms: 0.0,
        seq_scans,
        blocks,
    })
}

fn num(v: &Value, key: &str) -> f64 {
    v.get(key).and_then(Value::as_f64).unwrap_or(0.0)
}

fn walk(node: &Value, out: &mut Vec<SeqScan>) {
    if node.get("Node Type").and_then(Value::as_str) == Some("Seq Scan") {
        let schema = node.get("Schema").and_then(Value::as_str).unwrap_or("");
        let rel = node
            .get("Relation Name")
            .and_then(Value::as_str)
            .unwrap_or("?");
        let loops = num(node, "Actual Loops").max(1.0);
        let rows = (num(node, "Actual Rows") + num(node, "Rows Removed by Filter")) * loops;
        let table = if schema.is_empty() {
            rel.to_string()
        } else {
            format!("{schema}.{rel}")
        };
        // Catalog and extension tables are small; the data is what grows.
        if schema != "pg_catalog" && schema != "lifecycle" {
            out.push(SeqScan { table, rows });
        }
    }
    if let Some(children) = node.get("Plans").and_then(Value::as_array) {
        for c in children {
            walk(c, out);
        }
    }
}

/// The text with whitespace collapsed and `OPERATOR(pg_catalog.=)`,
/// `pg_catalog.` and casts to `pg_catalog` types shortened, for reading.
pub fn readable(sql: &str) -> String {
    let mut s = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    while let Some(start) = s.find("OPERATOR(pg_catalog.") {
        let Some(end) = s[start..].find(')') else {
            break;
        };
        let op = s[start + "OPERATOR(pg_catalog.".len()..start + end].to_string();
        s.replace_range(start..start + end + 1, &op);
    }
    s.replace("pg_catalog.", "")
}

/// "select app.comments", "delete app.files", "update lifecycle.jobs": the
/// verb and the first table the statement reads or writes.
pub fn label(sql: &str) -> String {
    let words: Vec<&str> = sql.split_whitespace().collect();
    let upper: Vec<String> = words
        .iter()
        .map(|w| w.trim_start_matches('(').to_uppercase())
        .collect();
    let verb = if upper.first().map(String::as_str) == Some("WITH") {
        ["DELETE", "UPDATE", "INSERT", "SELECT"]
            .iter()
            .find(|v| upper.iter().skip(1).any(|w| w == *v))
            .map(|v| v.to_string())
            .unwrap_or_else(|| "WITH".into())
    } else {
        upper.first().cloned().unwrap_or_default()
    };
    let table = words.windows(2).zip(upper.iter()).find_map(|(w, u)| {
        let t = w[1].trim_matches(|c: char| c == '(' || c == ')' || c == ',' || c == ';');
        let keyword = matches!(u.as_str(), "FROM" | "UPDATE" | "INTO");
        (keyword
            && t.contains('.')
            && !t.starts_with("pg_catalog.")
            && !t.contains('(')
            && !t.starts_with('$'))
        .then(|| t.replace('"', ""))
    });
    match table {
        Some(t) => format!("{} {t}", verb.to_lowercase()),
        None => verb.to_lowercase(),
    }
}

/// Statements of one call added up by text, the most expensive (execution,
/// parsing and planning) first; the top-level statement (`top`, the call
/// itself) left out.
pub fn aggregate(logged: &[Logged], top: &str) -> Vec<Statement> {
    let mut by_text: BTreeMap<String, Statement> = BTreeMap::new();
    for l in logged {
        let text = l.text.split_whitespace().collect::<Vec<_>>().join(" ");
        if text.trim_end_matches(';') == top.trim_end_matches(';') {
            continue;
        }
        let e = by_text.entry(text.clone()).or_insert_with(|| Statement {
            text,
            calls: 0,
            ms: 0.0,
            prep_ms: 0.0,
            seq_scans: Vec::new(),
            blocks: 0.0,
        });
        e.calls += 1;
        e.ms += l.ms;
        e.prep_ms += l.prep_ms;
        e.blocks += l.blocks;
        for s in &l.seq_scans {
            match e.seq_scans.iter_mut().find(|x| x.table == s.table) {
                Some(x) => x.rows += s.rows,
                None => e.seq_scans.push(s.clone()),
            }
        }
    }
    let mut v: Vec<Statement> = by_text.into_values().collect();
    v.sort_by(|a, b| (b.ms + b.prep_ms).total_cmp(&(a.ms + a.prep_ms)));
    v
}

/// What one profiled call cost, statement by statement.
pub struct Profile {
    pub title: String,
    /// The call's own duration as auto_explain logged it.
    pub total_ms: f64,
    /// The median of the timed samples of the same variant, for comparison.
    pub timed_median_ms: f64,
    pub statements: Vec<Statement>,
}

impl Profile {
    pub fn logged_ms(&self) -> f64 {
        self.statements.iter().map(|s| s.ms).sum()
    }

    pub fn prep_ms(&self) -> f64 {
        self.statements.iter().map(|s| s.prep_ms).sum()
    }

    pub fn print(&self, top: usize) {
        println!();
        println!("{}", self.title);
        println!(
            "  {:.1} ms under auto_explain (timed samples: median {:.1} ms): {} distinct statements, {} calls; \
             executing them {:.1} ms, parsing and planning them {:.1} ms, the rest (the caller's own code) {:.1} ms",
            self.total_ms,
            self.timed_median_ms,
            self.statements.len(),
            self.statements.iter().map(|s| s.calls).sum::<u32>(),
            self.logged_ms(),
            self.prep_ms(),
            self.total_ms - self.logged_ms() - self.prep_ms()
        );
        println!(
            "  {:>9} {:>8} {:>6} {:>5} {:>9}  {:<28} {:<30} statement",
            "exec ms", "plan ms", "share", "calls", "blocks", "what", "full scans (rows read)"
        );
        let share = |s: &Statement| 100.0 * (s.ms + s.prep_ms) / self.total_ms;
        for s in self.statements.iter().take(top) {
            let scans = s
                .seq_scans
                .iter()
                .map(|x| format!("{} {:.0}", x.table, x.rows))
                .collect::<Vec<_>>()
                .join(", ");
            let text = readable(&s.text);
            let short: String = text.chars().take(150).collect();
            println!(
                "  {:>9.1} {:>8.1} {:>5.1}% {:>5} {:>9.0}  {:<28} {:<30} {}{}",
                s.ms,
                s.prep_ms,
                share(s),
                s.calls,
                s.blocks,
                label(&s.text),
                if scans.is_empty() { "-".into() } else { scans },
                short,
                if text.chars().count() > 150 {
                    "..."
                } else {
                    ""
                }
            );
        }
        if self.statements.len() > top {
            let rest = &self.statements[top..];
            let ms: f64 = rest.iter().map(|s| s.ms).sum();
            let prep: f64 = rest.iter().map(|s| s.prep_ms).sum();
            println!(
                "  {:>9.1} {:>8.1} {:>5.1}% {:>5}            the other {} statements",
                ms,
                prep,
                100.0 * (ms + prep) / self.total_ms,
                rest.iter().map(|s| s.calls).sum::<u32>(),
                rest.len()
            );
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "title": self.title,
            "total_ms": self.total_ms,
            "timed_median_ms": self.timed_median_ms,
            "statements_exec_ms": self.logged_ms(),
            "statements_parse_plan_ms": self.prep_ms(),
            "statements": self.statements.iter().map(|s| json!({
                "what": label(&s.text),
                "exec_ms": s.ms,
                "parse_plan_ms": s.prep_ms,
                "calls": s.calls,
                "shared_blocks": s.blocks,
                "full_scans": s.seq_scans.iter().map(|x| json!({"table": x.table, "rows_read": x.rows})).collect::<Vec<_>>(),
                "text": readable(&s.text),
            })).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_auto_explain_notice() {
        let msg = "duration: 12.500 ms  plan:\n{\n  \"Query Text\": \"SELECT count(*) FROM app.comments WHERE x\",\n  \
                   \"Plan\": {\"Node Type\": \"Aggregate\", \"Shared Hit Blocks\": 10, \"Shared Read Blocks\": 5, \
                   \"Plans\": [{\"Node Type\": \"Seq Scan\", \"Schema\": \"app\", \"Relation Name\": \"comments\", \
                   \"Actual Rows\": 90, \"Rows Removed by Filter\": 10, \"Actual Loops\": 1}]}\n}";
        let l = parse_notice(msg).unwrap();
        assert_eq!(l.ms, 12.5);
        assert_eq!(l.blocks, 15.0);
        assert_eq!(
            l.seq_scans,
            vec![SeqScan {
                table: "app.comments".into(),
                rows: 100.0
            }]
        );
        assert!(parse_notice("some other notice").is_none());
    }

    #[test]
    fn labels_and_shortens_statements() {
        assert_eq!(
            label("WITH d AS (DELETE FROM app.files WHERE x RETURNING y) SELECT 1 FROM d"),
            "delete app.files"
        );
        assert_eq!(
            label("UPDATE lifecycle.jobs SET status = $2"),
            "update lifecycle.jobs"
        );
        assert_eq!(
            label("SELECT pg_catalog.count(*) FROM app.posts WHERE \"author_id\" = $1"),
            "select app.posts"
        );
        assert_eq!(
            readable("a  OPERATOR(pg_catalog.=)   $1::pg_catalog.int8"),
            "a = $1::int8"
        );
    }

    #[test]
    fn adds_up_the_same_statement() {
        let l = |t: &str, ms: f64| Logged {
            text: t.into(),
            ms,
            prep_ms: 0.5,
            seq_scans: vec![],
            blocks: 1.0,
        };
        let v = aggregate(
            &[
                l("SELECT 1", 1.0),
                l("SELECT  2", 5.0),
                l("SELECT 1", 2.0),
                l("SELECT top()", 9.0),
            ],
            "SELECT top();",
        );
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].text, "SELECT 2");
        assert_eq!((v[1].calls, v[1].ms, v[1].prep_ms), (2, 3.0, 1.0));
    }

    #[test]
    fn adds_parsing_and_planning_to_the_next_statement() {
        let plan = "PLANNER STATISTICS\n! system usage stats:\n!\t0.000000 s user, 0.000046 s system, 0.002000 s elapsed\n!\t[0.0 s user]";
        let exec = "duration: 1.000 ms  plan:\n{\"Query Text\": \"SELECT 1\", \"Plan\": {\"Node Type\": \"Result\"}}";
        let v = parse_notices(&[plan.into(), plan.into(), exec.into(), exec.into()]);
        assert_eq!(v.len(), 2);
        assert!((v[0].prep_ms - 4.0).abs() < 1e-9);
        assert_eq!(v[1].prep_ms, 0.0);
    }
}
