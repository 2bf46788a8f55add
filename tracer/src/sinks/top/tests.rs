use std::time::{Duration, Instant};

use ratatui::{
    backend::TestBackend,
    crossterm::event::{KeyCode, KeyEvent, KeyModifiers},
    Terminal,
};

use super::*;
use crate::{
    collector::{ledger::KernelClass, memory::BufferType::*},
    sinks::test_records::*,
};

fn key(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
}

/// Two processes: 7 with an N300 mesh holding 10 KiB of DRAM on both chips and a chip-0 L1
/// buffer; 9 with one chip, 2 KiB of DRAM and 5 application kernels.
fn two_processes(t0: Instant) -> TopState {
    let mut s = TopState::new("libtt_metal.so");
    for r in [
        started(7, "python3"),
        opened(7, 0),
        opened(7, 1),
        mesh(7, 1, &[0, 1]),
        alloc(7, None, Some(1), Dram, 4096),
        alloc(7, None, Some(1), Dram, 10240),
        alloc(7, Some(0), None, L1, 2048),
        kernel(7, 0, KernelClass::Fabric, 100),
        started(9, "tt_driver"),
        opened(9, 0),
        alloc(9, Some(0), None, Dram, 2048),
        cb(9, 0, 4096),
    ] {
        s.record(&r, t0);
    }
    for _ in 0..5 {
        s.record(&kernel(9, 0, KernelClass::Application, 12), t0);
    }
    s
}

#[test]
fn one_row_per_process_and_chip_with_the_mesh_buffers_on_each_chip() {
    let s = two_processes(Instant::now());
    let rows = s.rows();
    let keys: Vec<(u32, Option<i64>)> = rows.iter().map(|r| (r.pid, r.chip)).collect();
    assert_eq!(keys, [(7, Some(0)), (7, Some(1)), (9, Some(0))]);
    assert_eq!(rows[0].buffers[0], (10240, 10240));
    assert_eq!(rows[1].buffers[0], (10240, 10240));
    assert_eq!(rows[0].buffers[1], (2048, 2048));
    assert_eq!(rows[1].buffers[1], (0, 0));
    assert_eq!(rows[0].system_kernels.count, 1);
    assert_eq!(rows[2].application_kernels.count, 5);
    assert_eq!(rows[2].circular_buffers, (4096, 4096));
    assert!(rows.iter().all(|r| r.state == State::Running));
}

#[test]
fn s_cycles_the_sort_column_and_r_reverses_it() {
    let mut s = two_processes(Instant::now());
    assert_eq!(s.key(key('s')), Action::Redraw);
    assert_eq!(s.sort, SortBy::Dram);
    let pids: Vec<u32> = s.rows().iter().map(|r| r.pid).collect();
    assert_eq!(pids, [7, 7, 9]);
    while s.sort != SortBy::Kernels {
        s.key(key('s'));
    }
    let pids: Vec<u32> = s.rows().iter().map(|r| r.pid).collect();
    assert_eq!(pids, [9, 7, 7], "most kernels first");
    s.key(key('r'));
    let pids: Vec<u32> = s.rows().iter().map(|r| r.pid).collect();
    assert_eq!(pids, [7, 7, 9]);
    assert_eq!(s.key(key('q')), Action::Quit);
    assert_eq!(
        s.key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
        Action::Quit
    );
    assert_eq!(s.key(key('x')), Action::Nothing);
    s.filter = Some("driv".into());
    let pids: Vec<u32> = s.rows().iter().map(|r| r.pid).collect();
    assert_eq!(pids, [9]);
    // A change to a process not shown does not redraw the view; one to a shown one does.
    s.dirty = false;
    s.record(&alloc(7, Some(0), None, L1, 4096), Instant::now());
    assert!(!s.dirty);
    s.record(&alloc(9, Some(0), None, L1, 4096), Instant::now());
    assert!(s.dirty);
}

#[test]
fn an_exited_process_shows_what_each_chip_was_left_holding_then_goes() {
    let t0 = Instant::now();
    let mut s = two_processes(t0);
    s.keep_exited = Duration::from_secs(10);
    s.record(&exited(7, ExitStatus::Signal(9), &[(Dram, 10240)]), t0);
    let rows = s.rows();
    assert_eq!(
        rows[0].state,
        State::Exited {
            status: ExitStatus::Signal(9),
            left_buffers: 3,
            left_bytes: 10240 + 2048,
        }
    );
    assert_eq!(rows[0].buffers[0], (0, 10240), "released; the peak stays");
    assert_eq!(
        state_text(&rows[1].state, true),
        "killed SIGKILL, left 2 buf 10240"
    );
    assert_eq!(s.counts(), (1, 1));
    s.expire(t0 + Duration::from_secs(9));
    assert_eq!(s.rows().len(), 3);
    assert_eq!(s.next_expiry(), Some(t0 + Duration::from_secs(10)));
    s.expire(t0 + Duration::from_secs(10));
    assert_eq!(s.rows().len(), 1);
    // The pid comes back: a new process.
    s.record(&started(9, "again"), t0);
    s.record(&exited(9, ExitStatus::Code(0), &[]), t0);
    s.record(&opened(9, 3), t0);
    let rows = s.rows();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].chip, &rows[0].state), (Some(3), &State::Running));
}

#[test]
fn sizes_in_units_or_exact_bytes() {
    assert_eq!(bytes(0, false), "0B");
    assert_eq!(bytes(1023, false), "1023B");
    assert_eq!(bytes(10240, false), "10.0K");
    assert_eq!(bytes(3 << 20, false), "3.0M");
    assert_eq!(bytes(5 << 30, false), "5.00G");
    assert_eq!(bytes(10240, true), "10240");
}

#[test]
fn the_screen_shows_rows_header_and_keys() {
    let mut s = two_processes(Instant::now());
    s.exact = true;
    s.record(
        &Record::ContextEntered {
            pid: 9,
            tid: 9,
            ts_ns: 1,
            role: crate::roles::Role::DeviceInit,
            chip: Some(0),
        },
        Instant::now(),
    );
    let mut t = Terminal::new(TestBackend::new(200, 10)).unwrap();
    t.draw(|f| draw(f, &s)).unwrap();
    let screen: Vec<String> = t
        .backend()
        .buffer()
        .content()
        .chunks(200)
        .map(|l| l.iter().map(|c| c.symbol()).collect())
        .collect();
    let text = screen.join("\n");
    assert!(screen[0].contains("2 running, 0 exited"), "{text}");
    assert!(
        screen[1].contains("PID▲") && screen[1].contains("DRAM"),
        "{text}"
    );
    assert!(
        screen[2].contains("python3") && screen[2].contains("10240/10240"),
        "{text}"
    );
    assert!(
        screen[4].contains("tt_driver") && screen[4].contains("device_init"),
        "{text}"
    );
    assert!(
        screen[4].contains("0/5") && screen[4].contains("running"),
        "{text}"
    );
    assert!(
        screen[9].contains("q quit") && screen[9].contains("s sort: PID"),
        "{text}"
    );
}

#[test]
fn now_shows_the_operation_running_until_it_ends() {
    let t0 = Instant::now();
    let mut s = two_processes(t0);
    let began = crate::collector::Record::OpBegan {
        pid: 9,
        tid: 9,
        ts_ns: 2,
        op: "MatmulDeviceOperation".into(),
    };
    s.record(&began, t0);
    let now = |s: &TopState, pid| s.rows().into_iter().find(|r| r.pid == pid).unwrap().now;
    assert_eq!(now(&s, 9).as_deref(), Some("MatmulDeviceOperation"));
    assert_eq!(now(&s, 7), None, "another process runs no operation");
    let ended = crate::collector::Record::OpEnded {
        pid: 9,
        tid: 9,
        ts_ns: 3,
        op: "MatmulDeviceOperation".into(),
        duration_ns: 1,
        cache: None,
    };
    s.record(&ended, t0);
    assert_eq!(now(&s, 9), None);
}
