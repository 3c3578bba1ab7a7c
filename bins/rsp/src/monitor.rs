//! `rsp monitor URL…`: a live terminal view (ratatui) of one or more components' HTTP
//! endpoints — registrars (pools, PEs with load bars, peers, message rates), PEs and
//! gateways (their status and rates) — redrawn in place every interval; `q` (or Esc,
//! Ctrl-C) quits and puts the terminal back.
//!
//! The data comes from the endpoints' `/v1/status` and, for registrars,
//! `/v1/handlespace` through [`rserpool::service::http_admin::client`]; one task per
//! component polls, the drawing loop only reads what they left.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Row, Table};
use ratatui::Frame;
use rserpool::service::admin::DumpDoc;
use rserpool::service::http_admin::client;
use serde_json::Value;

use crate::args;

/// Watch components live: pools, PEs with load bars, peers, message rates.
#[derive(Debug, Args)]
pub struct MonitorArgs {
    /// HTTP endpoints of the components (`127.0.0.1:9990`, `http://[::1]:9991/`); a
    /// registrar's `--http`/`--admin`, a PE's `--http`, a gateway's `--admin`.
    #[arg(value_name = "URL", default_value = rserpool::service::admin::DEFAULT_ADMIN)]
    pub urls: Vec<String>,
    /// How often to ask each component.
    #[arg(long, default_value = "1s", value_parser = args::duration)]
    pub interval: Duration,
}

/// What is known of one component.
#[derive(Debug, Default)]
struct View {
    url: String,
    status: Option<Value>,
    doc: Option<DumpDoc>,
    error: Option<String>,
    /// Messages per second received and sent (registrars), from the last two polls.
    rates: Option<(f64, f64)>,
    /// Recent received rates, oldest first (a sparkline).
    history: Vec<u64>,
    updated: Option<Instant>,
}

pub fn run(args: &MonitorArgs) -> anyhow::Result<ExitCode> {
    let addrs: Vec<(String, SocketAddr)> = args
        .urls
        .iter()
        .map(|u| {
            crate::dump::http_addr(u)
                .map(|a| (u.clone(), a))
                .with_context(|| format!("bad HTTP endpoint {u:?}"))
        })
        .collect::<anyhow::Result<_>>()
        .map_err(crate::exit::usage)?;
    if args.interval.is_zero() {
        return Err(crate::exit::usage(anyhow::anyhow!(
            "--interval must be above 0"
        )));
    }
    let views: Vec<Arc<Mutex<View>>> = addrs
        .iter()
        .map(|(_, a)| {
            Arc::new(Mutex::new(View {
                url: format!("http://{a}/"),
                ..View::default()
            }))
        })
        .collect();
    let rt = args::runtime()?;
    for ((_, addr), view) in addrs.iter().zip(&views) {
        rt.spawn(poll(*addr, view.clone(), args.interval));
    }
    let mut terminal = ratatui::init();
    let result = (|| -> anyhow::Result<()> {
        loop {
            terminal.draw(|f| draw(f, &views))?;
            if event::poll(Duration::from_millis(200))? {
                if let Event::Key(k) = event::read()? {
                    let ctrl_c =
                        k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
                    if k.kind == KeyEventKind::Press
                        && (matches!(k.code, KeyCode::Char('q') | KeyCode::Esc) || ctrl_c)
                    {
                        return Ok(());
                    }
                }
            }
        }
    })();
    ratatui::restore();
    rt.shutdown_timeout(Duration::from_millis(100));
    result?;
    Ok(ExitCode::SUCCESS)
}

/// Ask `addr` every `every`, leaving the answers in `view`.
async fn poll(addr: SocketAddr, view: Arc<Mutex<View>>, every: Duration) {
    let timeout = every.max(Duration::from_secs(2));
    let mut last: Option<(Instant, u64, u64)> = None;
    loop {
        let status = client::get_json::<Value>(addr, "/v1/status", timeout).await;
        let doc = match &status {
            Ok(s) if s["component"] == "registrar" => {
                Some(client::get_json::<DumpDoc>(addr, "/v1/handlespace", timeout).await)
            }
            _ => None,
        };
        let now = Instant::now();
        if let Ok(mut v) = view.lock() {
            match status {
                Ok(s) if s.get("messages").is_none() => {
                    v.status = Some(s);
                    v.error = None;
                }
                Ok(s) => {
                    let m = &s["messages"];
                    let n = |k: &str| m[k].as_u64().unwrap_or(0);
                    let rx = n("asap_received") + n("enrp_received");
                    let tx = n("asap_sent") + n("enrp_sent");
                    if let Some((t, r0, t0)) = last {
                        let dt = now.duration_since(t).as_secs_f64().max(1e-3);
                        let rates = (
                            rx.saturating_sub(r0) as f64 / dt,
                            tx.saturating_sub(t0) as f64 / dt,
                        );
                        v.rates = Some(rates);
                        v.history.push(rates.0.round() as u64);
                        if v.history.len() > 120 {
                            v.history.remove(0);
                        }
                    }
                    last = Some((now, rx, tx));
                    v.status = Some(s);
                    v.error = None;
                }
                Err(e) => {
                    v.error = Some(format!("{e:#}"));
                    last = None;
                }
            }
            match doc {
                Some(Ok(d)) => v.doc = Some(d),
                Some(Err(e)) => v.error = Some(format!("{e:#}")),
                None => v.doc = None,
            }
            v.updated = Some(now);
        }
        tokio::time::sleep(every).await;
    }
}

fn draw(f: &mut Frame, views: &[Arc<Mutex<View>>]) {
    let areas = Layout::vertical(
        std::iter::repeat_n(Constraint::Fill(1), views.len()).chain([Constraint::Length(1)]),
    )
    .split(f.area());
    for (view, area) in views.iter().zip(areas.iter()) {
        let Ok(v) = view.lock() else { continue };
        draw_one(f, &v, *area);
    }
    if let Some(area) = areas.last() {
        f.render_widget(
            Paragraph::new(Line::from(vec![
                Span::styled(" q ", Style::new().add_modifier(Modifier::REVERSED)),
                Span::raw(" quit   rsp monitor"),
            ])),
            *area,
        );
    }
}

fn bar(percent: f64, width: usize) -> String {
    let filled = ((percent.clamp(0.0, 100.0) / 100.0) * width as f64).round() as usize;
    format!(
        "{}{} {percent:>5.1}%",
        "█".repeat(filled),
        "░".repeat(width - filled)
    )
}

fn age(ms: Option<u64>) -> String {
    match ms {
        None => "-".into(),
        Some(v) if v < 10_000 => format!("{:.1}s", v as f64 / 1000.0),
        Some(v) if v < 3_600_000 => format!("{}s", v / 1000),
        Some(v) => format!("{}h{}m", v / 3_600_000, (v / 60_000) % 60),
    }
}

fn draw_one(f: &mut Frame, v: &View, area: ratatui::layout::Rect) {
    let kind = v
        .status
        .as_ref()
        .and_then(|s| s["component"].as_str())
        .unwrap_or("?");
    let id = v
        .status
        .as_ref()
        .and_then(|s| s["server_id"].as_str())
        .unwrap_or("");
    let title = format!(" {kind} {id} {} ", v.url);
    let block =
        Block::bordered().title(Line::from(title).style(Style::new().add_modifier(Modifier::BOLD)));
    let inner = block.inner(area);
    f.render_widget(block, area);
    let mut lines: Vec<Line> = Vec::new();
    if let Some(e) = &v.error {
        lines.push(Line::styled(
            format!("unreachable: {e}"),
            Style::new().fg(Color::Red),
        ));
    }
    if let Some(s) = &v.status {
        let summary = match kind {
            "registrar" => format!(
                "{} PEs ({} own) in {} pools, {} peers, {} connections, ENRP {}",
                s["pe_count"],
                s["pes_owned"],
                s["pool_count"],
                s["peer_count"],
                s["connections"],
                s["enrp_phase"].as_str().unwrap_or("?")
            ),
            "pool-element" => format!(
                "pool {} ({}), {} session(s), entries: {}",
                s["pool"].as_str().unwrap_or("?"),
                s["service"].as_str().unwrap_or("?"),
                s["sessions"],
                s["entries"]
                    .as_array()
                    .map(|a| a
                        .iter()
                        .map(|e| format!(
                            "{} {}",
                            e["pe"].as_str().unwrap_or("?"),
                            e["state"].as_str().unwrap_or("?")
                        ))
                        .collect::<Vec<_>>()
                        .join(", "))
                    .unwrap_or_default()
            ),
            _ => format!(
                "{} connections open, {} accepted, {} requests, {} failovers",
                s["connections_open"], s["connections_accepted"], s["requests"], s["failovers"]
            ),
        };
        lines.push(Line::raw(summary));
    }
    if let Some((rx, tx)) = v.rates {
        let spark: String = {
            const TICKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
            let tail = &v.history[v.history.len().saturating_sub(40)..];
            let max = tail.iter().copied().max().unwrap_or(0).max(1);
            tail.iter()
                .map(|x| TICKS[((*x * 7) / max) as usize])
                .collect()
        };
        lines.push(Line::from(vec![
            Span::raw(format!("messages/s: {rx:.1} in, {tx:.1} out  ")),
            Span::styled(spark, Style::new().fg(Color::Cyan)),
        ]));
    }
    let head = lines.len() as u16;
    let peers = v.doc.as_ref().map_or(0, |d| d.enrp.peers.len());
    let parts = Layout::vertical([
        Constraint::Length(head),
        Constraint::Fill(1),
        Constraint::Length(if peers > 0 { peers as u16 + 2 } else { 0 }),
    ])
    .split(inner);
    f.render_widget(Paragraph::new(lines), parts[0]);
    let Some(doc) = &v.doc else { return };
    let mut rows = Vec::new();
    for p in &doc.pools {
        for pe in &p.pes {
            rows.push(Row::new(vec![
                p.handle.clone(),
                pe.id.clone(),
                pe.policy.clone(),
                pe.load_percent.map_or_else(|| "-".into(), |l| bar(l, 10)),
                pe.home.clone(),
                age(pe.age_ms),
                pe.user_transport.clone(),
            ]));
        }
    }
    if rows.is_empty() {
        f.render_widget(Paragraph::new("no pools"), parts[1]);
    } else {
        let table = Table::new(
            rows,
            [
                Constraint::Length(16),
                Constraint::Length(11),
                Constraint::Length(7),
                Constraint::Length(17),
                Constraint::Length(11),
                Constraint::Length(7),
                Constraint::Fill(1),
            ],
        )
        .header(
            Row::new(["POOL", "PE", "POLICY", "LOAD", "HOME", "AGE", "TRANSPORT"])
                .style(Style::new().add_modifier(Modifier::BOLD)),
        );
        f.render_widget(table, parts[1]);
    }
    if peers > 0 {
        let rows: Vec<Row> = doc
            .enrp
            .peers
            .iter()
            .map(|p| {
                Row::new(vec![
                    p.server_id.clone(),
                    p.endpoint.clone().unwrap_or_else(|| "-".into()),
                    p.state.clone(),
                    p.last_heard_ms
                        .map_or_else(|| "never".into(), |ms| format!("{} ago", age(Some(ms)))),
                    p.owned_pes.to_string(),
                ])
            })
            .collect();
        let table = Table::new(
            rows,
            [
                Constraint::Length(11),
                Constraint::Length(24),
                Constraint::Length(13),
                Constraint::Length(11),
                Constraint::Fill(1),
            ],
        )
        .header(
            Row::new(["PEER", "ENDPOINT", "STATE", "HEARD", "PES"])
                .style(Style::new().add_modifier(Modifier::BOLD)),
        )
        .block(Block::new().title("peers"));
        f.render_widget(table, parts[2]);
    }
}
