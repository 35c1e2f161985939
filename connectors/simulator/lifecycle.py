"""Leg lifecycle steps shared by every scenario: start, ring, answer, hold, record, end."""

from __future__ import annotations

from connectors.simulator.builder import Gen
from connectors.simulator.records import Leg, Recording
from connectors.simulator.timefmt import US, date_compact, file_stamp

WAV_BYTES_PER_S = 16_000  # 8 kHz, 16-bit mono PCM
MP3_BYTES_PER_S = 3_000  # 24 kbit/s


def start(g: Gen, t: int, leg: Leg) -> None:
    """The leg's first event (``call_incoming`` in 1.0, ``call_created`` today)."""
    leg.created = t
    g.emit(t, "call_start", leg)


def ring(g: Gen, t: int, leg: Leg) -> None:
    if leg.ringing is None:
        leg.ringing = t
    g.emit(t, "call_ringing", leg)


def answer(g: Gen, t: int, leg: Leg) -> None:
    """A person or the far end answered (``call_answered``)."""
    leg.answered = t
    g.emit(t, "call_answered", leg)


def abandon_reason(g: Gen) -> str:
    """Today's server rewrites a never-connected queued caller's hangup to ``abandoned``."""
    return "caller" if g.v1 else "abandoned"


def hangup(g: Gen, t: int, leg: Leg, reason: str, by: str | None, sip: int | None = None) -> None:
    """``call_hangup``; running recordings stop first, as RustPBX's cleanup does."""
    for rec in leg.recordings:
        if rec.stopped is None and rec.failed is None:
            stop_recording(g, t, rec)
    for hold in leg.holds:
        if hold[1] is None:
            hold[1] = t
    leg.ended = t
    leg.end_kind = "hangup"
    leg.hangup_reason = reason
    leg.hangup_by = by
    leg.sip_status = sip
    g.emit(t, "call_hangup", leg, {"reason": reason, "hangup_by": by, "sip_status": sip})
    upload_recordings(g, leg)


def end_unanswered(g: Gen, t: int, leg: Leg, kind: str) -> None:
    """An originate that ends with ``call_busy`` or ``call_no_answer`` and no ``call_hangup``."""
    leg.ended = t
    leg.end_kind = kind
    g.emit(t, "call_busy" if kind == "busy" else "call_no_answer", leg)


def hold(g: Gen, t: int, leg: Leg) -> None:
    leg.holds.append([t, None])
    g.emit(t, "media_hold_started", leg)


def unhold(g: Gen, t: int, leg: Leg) -> None:
    leg.holds[-1][1] = t
    g.emit(t, "media_hold_stopped", leg)


def start_recording(g: Gen, t: int, leg: Leg, *, auto: bool) -> Recording:
    """Start a recording; today's automatic recordings send no ``record_started``."""
    rec = Recording(leg, (leg.uuid or leg.call_id) if g.v1 else leg.call_id, t,
                    auto and not g.v1)
    leg.recordings.append(rec)
    if not rec.auto:
        g.emit(t, "record_started", leg)
    return rec


def pause_recording(g: Gen, t: int, rec: Recording) -> None:
    rec.pauses.append([t, None])
    g.emit(t, "record_paused", rec.leg)


def resume_recording(g: Gen, t: int, rec: Recording) -> None:
    rec.pauses[-1][1] = t
    g.emit(t, "record_resumed", rec.leg)


def fail_recording(g: Gen, t: int, rec: Recording, error: str) -> None:
    rec.failed = t
    g.emit(t, "record_failed", rec.leg, {"error": error})


def stop_recording(g: Gen, t: int, rec: Recording) -> None:
    """``record_stopped`` with the file's length and size."""
    for pause in rec.pauses:
        if pause[1] is None:
            pause[1] = t
    rec.stopped = t
    active = t - rec.started - sum(int(p[1] or t) - p[0] for p in rec.pauses if p[0] is not None)
    rec.duration_secs = active // US
    leg = rec.leg
    rec.agent_id = leg.agent_id
    day = date_compact(rec.started)
    if g.v1:
        rec.file_size = 417 + active * MP3_BYTES_PER_S // US
        rec.filename = f"{leg.uuid}_{file_stamp(rec.started)}.mp3"
        rec.meta_filename = rec.filename
        rec.download_url = f"https://storage.example.com/rec/{day}/{rec.filename}"
    else:
        safe = leg.call_id.replace("@", "_")
        rec.file_size = 44 + active * WAV_BYTES_PER_S // US
        rec.filename = f"/var/lib/rustpbx/recordings/{day}/{safe}.wav"
        rec.meta_filename = f"{safe}.wav"
        rec.download_url = f"/var/lib/rustpbx/archive/{day}/{safe}.wav"
    g.emit(t, "record_stopped", leg, {"rec": rec})


def upload_recordings(g: Gen, leg: Leg) -> None:
    """After hangup the CDR pipeline uploads each stopped recording, seconds later."""
    assert leg.ended is not None
    at = leg.ended
    for rec in leg.recordings:
        if rec.stopped is None or rec.meta_at is not None:
            continue
        at += g.dur(4.0, 1.0, 40.0)
        rec.upload_time = at - g.uni(0.01, 0.3)
        rec.meta_at = at
        g.emit(at, "recording_metadata_available", leg, {"rec": rec})
        rec.end_at = at + g.uni(0.002, 0.4)
        g.emit(rec.end_at, "record_end", leg, {"rec": rec})
