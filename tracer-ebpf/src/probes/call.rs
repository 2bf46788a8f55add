//! The generic tt-metal probes: one uprobe and one uretprobe, attached to every resolved
//! function with the recipe index as cookie (per-point perf-event uprobes, or the `_multi`
//! twins in one multi-uprobe link per library).
//!
//! - `Context` recipes push/pop an origin on the thread's context stack (fabric, dispatch, …)
//!   and emit enter/exit events (phase timing, device being configured).
//! - `Call` recipes emit the fields at entry (kernel-binary write, device constructor, close).
//! - `CallWithReturn` recipes keep the entry fields and emit them with the return value
//!   (allocations: size at entry, address on return).

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user},
    macros::{uprobe, uretprobe},
    programs::{ProbeContext, RetProbeContext},
    EbpfContext,
};
use tracer_common::{
    counters::Counter, Event, EventKind, FieldOp, FieldRule, Recipe, RecipeKind,
    CONTEXT_NAMED_BY_COOKIE,
};

use crate::{
    context,
    emit::submit,
    maps::{count, PendingKey, PENDING, RECIPES},
    process::{registered_instance, traced_instance},
};

#[uprobe]
pub fn tt_entry(ctx: ProbeContext) -> u32 {
    let _ = try_entry(&ctx);
    0
}

#[uretprobe]
pub fn tt_return(ctx: RetProbeContext) -> u32 {
    let _ = try_return(&ctx);
    0
}

/// The same probes for one multi-uprobe link per library (cookie per offset): a program is
/// loaded for either kind of attachment, never both, so each kind has its own entry point.
#[uprobe(multi)]
pub fn tt_entry_multi(ctx: ProbeContext) -> u32 {
    let _ = try_entry(&ctx);
    0
}

#[uretprobe(multi)]
pub fn tt_return_multi(ctx: RetProbeContext) -> u32 {
    let _ = try_return(&ctx);
    0
}

fn cookie(ctx: &impl EbpfContext) -> u64 {
    // SAFETY: helper available to kprobe-type programs since 5.15.
    unsafe { aya_ebpf::helpers::generated::bpf_get_attach_cookie(ctx.as_ptr()) }
}

/// The recipe of an attach point. A missing one is a loader bug: said once per hit through
/// aya-log (rare by construction, so the log's cost does not matter).
fn recipe(ctx: &impl EbpfContext, cookie: u64) -> Option<&'static Recipe> {
    let r = RECIPES
        .get(cookie as u32)
        .filter(|r| r.kind != RecipeKind::None as u8);
    if r.is_none() {
        aya_log_ebpf::warn!(ctx, "attach cookie {} has no recipe", cookie);
    }
    r
}

/// A `kind` event of process (`tgid`, `instance`)'s current thread about `recipe`'s role.
fn new_event(recipe: &Recipe, kind: EventKind, pid_tgid: u64, instance: u64, now: u64) -> Event {
    let mut ev = Event::new(
        kind,
        recipe.role,
        now,
        instance,
        (pid_tgid >> 32) as u32,
        pid_tgid as u32,
    );
    ev.library = recipe.library;
    ev
}

/// The six System V argument registers, read at constant offsets: the verifier refuses a
/// context access at a variable offset.
fn arg_registers(ctx: &ProbeContext) -> [u64; 6] {
    [
        ctx.arg(0).unwrap_or(0),
        ctx.arg(1).unwrap_or(0),
        ctx.arg(2).unwrap_or(0),
        ctx.arg(3).unwrap_or(0),
        ctx.arg(4).unwrap_or(0),
        ctx.arg(5).unwrap_or(0),
    ]
}

fn read_field(args: &[u64; 6], rule: &FieldRule) -> u64 {
    let Some(&reg) = args.get(rule.arg as usize) else {
        return 0;
    };
    let at = reg.wrapping_add(rule.offset as u64);
    let loaded = match rule.op {
        x if x == FieldOp::Reg as u8 => return reg,
        x if x == FieldOp::Load64 as u8 => {
            // SAFETY: bpf_probe_read_user validates the address.
            unsafe { bpf_probe_read_user(at as *const u64) }
        }
        x if x == FieldOp::Load32 as u8 => {
            // SAFETY: as above.
            unsafe { bpf_probe_read_user(at as *const u32) }.map(u64::from)
        }
        x if x == FieldOp::VecBytes as u8 => {
            // SAFETY: as above; begin at +0, end at +8 (libstdc++ std::vector).
            unsafe { bpf_probe_read_user(at as *const [u64; 2]) }.map(|[b, e]| e.wrapping_sub(b))
        }
        _ => return 0,
    };
    match loaded {
        Ok(v) => v,
        Err(_) => {
            count(Counter::FieldReadFailed);
            0
        }
    }
}

fn try_entry(ctx: &ProbeContext) -> Result<(), ()> {
    let cookie = cookie(ctx);
    let recipe = recipe(ctx, cookie).ok_or(())?;
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    // Not traced (another process mapping the library): nothing pushed, nothing kept.
    let instance = traced_instance((pid_tgid >> 32) as u32, now).ok_or(())?;

    let args = arg_registers(ctx);
    let (origin, this, depth) = context::innermost(pid_tgid);
    let kind = if recipe.kind == RecipeKind::Context as u8 {
        EventKind::ContextEnter
    } else {
        EventKind::Call
    };
    let mut ev = new_event(recipe, kind, pid_tgid, instance, now);
    for (out, rule) in ev.fields.iter_mut().zip(recipe.fields.iter()) {
        *out = read_field(&args, rule);
    }

    if recipe.kind == RecipeKind::Context as u8 {
        // `this` (or a result pointer) names the context; the enclosing one links it to its
        // parent (e.g. a mesh allocator to the mesh being created).
        let own = match recipe.context_arg {
            CONTEXT_NAMED_BY_COOKIE => cookie,
            arg => args.get(arg as usize).copied().unwrap_or(0),
        };
        let depth = context::push(pid_tgid, recipe.origin, own).ok_or(())?;
        ev.origin = recipe.origin;
        ev.depth = depth as u8;
        ev.context_this = own;
        ev.parent_origin = origin;
        ev.parent_this = this;
        submit(recipe.ring, &ev);
        return Ok(());
    }

    ev.origin = origin;
    ev.context_this = this;
    ev.depth = depth as u8;

    if recipe.kind == RecipeKind::CallWithReturn as u8 {
        let key = PendingKey { pid_tgid, cookie };
        if PENDING.insert(&key, &ev, 0).is_err() {
            count(Counter::PendingMapFull);
        }
    } else if recipe.kind == RecipeKind::Call as u8 {
        submit(recipe.ring, &ev);
    }
    Ok(())
}

fn try_return(ctx: &RetProbeContext) -> Result<(), ()> {
    let cookie = cookie(ctx);
    let recipe = recipe(ctx, cookie).ok_or(())?;
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };

    if recipe.kind == RecipeKind::Context as u8 {
        // Its entry registered the process if it is traced at all.
        let Some(instance) = registered_instance((pid_tgid >> 32) as u32) else {
            return Ok(());
        };
        let (origin, this, _) = context::innermost(pid_tgid);
        let depth = context::pop(pid_tgid);
        if depth == 0 {
            count(Counter::ReturnWithoutEntry);
            return Err(());
        }
        let mut ev = new_event(recipe, EventKind::ContextExit, pid_tgid, instance, now);
        ev.origin = origin;
        ev.depth = depth as u8;
        ev.context_this = this;
        submit(recipe.ring, &ev);
        return Ok(());
    }

    if recipe.kind == RecipeKind::CallWithReturn as u8 {
        let key = PendingKey { pid_tgid, cookie };
        // SAFETY: copied out before the entry is removed.
        let Some(entry) = (unsafe { PENDING.get(&key) }).copied() else {
            if registered_instance((pid_tgid >> 32) as u32).is_none() {
                return Ok(()); // not traced: its entry kept nothing
            }
            count(Counter::ReturnWithoutEntry);
            return Err(());
        };
        let _ = PENDING.remove(&key);
        let mut ev = entry;
        ev.ret = ctx.ret::<u64>();
        ev.ts_ns = now;
        submit(recipe.ring, &ev);
    }
    Ok(())
}
