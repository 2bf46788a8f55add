//! Drawing the view: a title line, the table, a footer line teaching the keys.

use ratatui::{
    layout::{Constraint, Layout},
    style::{Color, Modifier, Style},
    text::Line,
    widgets::{Cell, Paragraph, Row as TableRow, Table},
    Frame,
};

use super::{Row, SortBy, State, TopState};
use crate::collector::ExitStatus;

/// Bytes as the table shows them: exact, or in binary units (K = KiB, M = MiB, G = GiB).
pub fn bytes(n: u64, exact: bool) -> String {
    const K: f64 = 1024.0;
    let f = n as f64;
    match n {
        _ if exact => n.to_string(),
        0..1024 => format!("{n}B"),
        1024..1_048_576 => format!("{:.1}K", f / K),
        1_048_576..1_073_741_824 => format!("{:.1}M", f / (K * K)),
        _ => format!("{:.2}G", f / (K * K * K)),
    }
}

/// `live/peak`, or `-` when nothing was ever there.
fn live_peak((live, peak): (u64, u64), exact: bool) -> String {
    if live == 0 && peak == 0 {
        "-".to_string()
    } else {
        format!("{}/{}", bytes(live, exact), bytes(peak, exact))
    }
}

fn signal_name(n: i32) -> String {
    nix::sys::signal::Signal::try_from(n)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {n}"))
}

/// The STATE cell: `running`, or how it ended and what this chip was left holding.
pub fn state_text(s: &State, exact: bool) -> String {
    match s {
        State::Running => "running".to_string(),
        State::Exited {
            status,
            left_buffers,
            left_bytes,
        } => {
            let how = match status {
                ExitStatus::Code(c) => format!("exited {c}"),
                ExitStatus::Signal(n) => format!("killed {}", signal_name(*n)),
                ExitStatus::Unknown => "exited ?".to_string(),
            };
            if *left_buffers == 0 {
                format!("{how}, left nothing")
            } else {
                format!(
                    "{how}, left {left_buffers} buf {}",
                    bytes(*left_bytes, exact)
                )
            }
        }
    }
}

const HEADERS: [&str; 11] = [
    "PID", "COMMAND", "CHIP", "DRAM", "L1", "L1_SMALL", "TRACE", "CB", "KERNELS", "NOW", "STATE",
];

/// The header of the column `sort` orders by.
fn sorted_column(sort: SortBy) -> usize {
    match sort {
        SortBy::Pid => 0,
        SortBy::Command => 1,
        SortBy::Dram => 3,
        SortBy::L1 => 4,
        SortBy::L1Small => 5,
        SortBy::Trace => 6,
        SortBy::Cb => 7,
        SortBy::Kernels => 8,
    }
}

/// The cells of one row, in [`HEADERS`] order.
pub fn cells(r: &Row, exact: bool) -> [String; 11] {
    let chip = match (r.chip, r.unattributed) {
        (Some(c), _) => c.to_string(),
        (None, true) => "?".to_string(),
        (None, false) => "-".to_string(),
    };
    let b = |i: usize| live_peak(r.buffers[i], exact);
    [
        r.pid.to_string(),
        if r.command.is_empty() {
            "?".to_string()
        } else {
            r.command.clone()
        },
        chip,
        b(0),
        b(1),
        b(2),
        b(3),
        live_peak(r.circular_buffers, exact),
        format!("{}/{}", r.system_kernels.count, r.application_kernels.count),
        r.now.clone().unwrap_or_else(|| "-".to_string()),
        state_text(&r.state, exact),
    ]
}

/// Draws the whole view into `frame`.
pub fn draw(frame: &mut Frame<'_>, s: &TopState) {
    let [title, table, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let (running, exited) = s.counts();
    let libraries = if s.live.refused > 0 {
        format!(
            "{} libraries armed, {} refused",
            s.live.libraries.len(),
            s.live.refused
        )
    } else {
        format!("{} libraries armed", s.live.libraries.len())
    };
    let only = match &s.filter {
        Some(f) => format!(" | only commands containing {f:?}"),
        None => String::new(),
    };
    frame.render_widget(
        Paragraph::new(format!(
            "tt-tracer top: processes loading {} | {running} running, {exited} exited | {libraries} | events {} | lost {}{only}",
            s.library, s.events, s.lost
        ))
        .style(Style::new().add_modifier(Modifier::BOLD)),
        title,
    );

    let rows = s.rows();
    let mut headers = HEADERS.map(str::to_string);
    let arrow = if s.sort.descending() != s.reverse {
        "▼"
    } else {
        "▲"
    };
    headers[sorted_column(s.sort)].push_str(arrow);
    let texts: Vec<[String; 11]> = rows.iter().map(|r| cells(r, s.exact)).collect();
    let widths: Vec<Constraint> = (0..HEADERS.len())
        .map(|i| {
            let w = texts
                .iter()
                .map(|t| t[i].chars().count())
                .chain([headers[i].chars().count()])
                .max()
                .unwrap_or(1);
            if i == HEADERS.len() - 1 {
                Constraint::Min(w as u16)
            } else {
                Constraint::Length(w as u16)
            }
        })
        .collect();
    let header = TableRow::new(headers.iter().map(|h| Cell::from(h.as_str())))
        .style(Style::new().add_modifier(Modifier::REVERSED));
    let body = rows.iter().zip(&texts).skip(s.offset).map(|(r, t)| {
        let style = match &r.state {
            State::Running => Style::new(),
            State::Exited { left_buffers, .. } if *left_buffers > 0 => Style::new().fg(Color::Red),
            State::Exited { .. } => Style::new().add_modifier(Modifier::DIM),
        };
        TableRow::new(t.iter().map(|c| Cell::from(c.as_str()))).style(style)
    });
    frame.render_widget(
        Table::new(body, widths).header(header).column_spacing(2),
        table,
    );
    if rows.is_empty() {
        let [_, message] =
            Layout::vertical([Constraint::Length(2), Constraint::Min(0)]).areas(table);
        frame.render_widget(
            Paragraph::new(format!(
                "no tt-metal process yet: each process that loads {} appears here",
                s.library
            )),
            message,
        );
    }

    let order = if s.reverse { ", reversed" } else { "" };
    let units = if s.exact {
        "sizes in bytes"
    } else {
        "K/M/G = KiB/MiB/GiB"
    };
    frame.render_widget(
        Paragraph::new(Line::from(format!(
            "q quit | s sort: {}{order} | r reverse | b bytes/units | arrows scroll | sizes live/peak, {units} | KERNELS system/application",
            s.sort.name()
        )))
        .style(Style::new().add_modifier(Modifier::REVERSED)),
        footer,
    );
}
