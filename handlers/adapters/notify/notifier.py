"""The notifier: fans one plan out to every chosen channel, under storm control.

Per channel, in order: skip it if an earlier delivery of this event already settled it (ledger
state `notify:event:<key>`), ask storm control (`notify:storm:<channel>`) whether to send or hold
it for the digest, send any digest whose window has closed, then send the message. One channel
failing does not stop the others, whatever it raises: an unclassified exception is that
channel's permanent failure. A transient failure on any channel makes the whole event
RetryableError (Event Grid redelivers), and the redelivery only retries the unsettled channels.
Each message's id is `<event key>.<channel>`, the same on every redelivery, so a receiver can
drop the repeat that a crash between sending and recording leaves possible.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, Protocol

from handlers.errors import PermanentError, RetryableError
from handlers.ledger.ledger import Ledger, utc_iso
from handlers.notify import storm
from handlers.notify.message import Digest, Message, digest_message, notice_message
from handlers.notify.plan import NotificationPlan
from handlers.notify.settings import ChannelSettings
from handlers.outcome import ActionResult, Outcome, plan_detail
from handlers.runtime import telemetry
from handlers.runtime.redaction import redact, secret_values

log = logging.getLogger("amlevents.notify")

SENT, HELD, FAILED, RETRY = "sent", "digested", "failed", "retry"


class Channel(Protocol):
    """One way of telling people: SMTP, ACS Email, Teams, Slack, webhook, outbox."""

    name: str

    def send(self, message: Message) -> str:
        """Deliver; a short receipt, or RetryableError / PermanentError (never a secret)."""


def event_state_key(event_key: str) -> str:
    """Where the per-channel results of one event are kept."""
    return f"notify:event:{event_key}"


def storm_state_key(channel: str) -> str:
    """Where a channel's storm-control window is kept."""
    return f"notify:storm:{channel}"


class Notifier:
    """The real `notify` adapter."""

    def __init__(self, channels: Mapping[str, Channel], ledger: Ledger,
                 policy: storm.StormPolicy, *, secrets: tuple[str, ...] = (),
                 lease_s: float = 120.0) -> None:
        self.channels = dict(channels)
        self.ledger = ledger
        self.policy = policy
        self.lease_s = lease_s
        self._secrets = secrets

    def notify(self, plan: NotificationPlan) -> ActionResult:
        """Notify on every chosen channel; done, failed, or RetryableError naming each channel."""
        names = plan.channels if plan.channels is not None else tuple(self.channels)
        earlier = (self.ledger.get_state(event_state_key(plan.event_key)) or {}).get(
            "channels", {})
        results: dict[str, str] = {}
        statuses: dict[str, str] = {}
        for name in names:
            if name in earlier:
                statuses[name] = earlier[name]["status"]
                results[name] = f"{earlier[name]['detail']} (earlier delivery)"
                continue
            status, text = self._one(name, plan)
            statuses[name], results[name] = status, self._clean(text)
            if status == SENT:  # remembered at once: a crash now must not send it twice
                self._settle(plan.event_key, {name: (status, results[name])})
        if RETRY in statuses.values():
            # A redelivery will come: remember what is settled so it only retries the rest.
            self._settle(plan.event_key, {n: (s, results[n]) for n, s in statuses.items()
                                          if s in (HELD, FAILED) and n not in earlier})
        return self._outcome(plan, statuses, results)

    def _one(self, name: str, plan: NotificationPlan) -> tuple[str, str]:
        channel = self.channels.get(name)
        if channel is None:
            return FAILED, "not configured"
        now = self.ledger.clock()
        token = uuid.uuid4().hex
        notice = plan.notice
        try:
            state = self.ledger.update_state(storm_state_key(name), lambda s: storm.admit(
                s, now=now, policy=self.policy, label=notice.group,
                run_id=dict(notice.facts).get("Run", notice.event_id), link=notice.link,
                token=token))
        except RetryableError as exc:  # storm state contended: nothing counted, try again
            return RETRY, f"will retry: {exc}"
        verdict = (state or {}).get("verdict", {})
        before = self._send_pending(name, channel, state, now)
        if verdict.get("kind") == storm.HOLD:
            log.debug("notify %s: held for the digest", name)
            return HELD, (f"digested: held #{verdict.get('held')} of the storm window opened "
                          f"{utc_iso(float(verdict.get('window_start', now)))}{before}")
        message = notice_message(notice, f"{plan.event_key}.{name}")
        try:
            if getattr(channel, "needs_first_sent", False):
                message = replace(message, first_sent_s=self._first_sent(plan.event_key, name))
            receipt = channel.send(message)
        except RetryableError as exc:
            log.warning("notify %s failed, will retry: %s", name, self._clean(str(exc)))
            return RETRY, f"will retry: {exc}{before}"
        except PermanentError as exc:
            log.error("notify %s failed: %s", name, self._clean(str(exc)))
            return FAILED, f"failed: {exc}{before}"
        except Exception as exc:
            # Unclassified (a library's surprise, a bug): this channel failed for good, and the
            # others still get their message. Retrying would fail the same way.
            text = f"{type(exc).__name__}: {exc}"
            log.error("notify %s failed unexpectedly: %s", name, self._clean(text), exc_info=True)
            return FAILED, f"failed: {text}{before}"
        log.info("notify %s: sent %s", name, message.title)
        return SENT, f"sent: {receipt}{before}"

    def _first_sent(self, event_key: str, name: str) -> float:
        """When this event was first tried on this channel, kept across redeliveries."""
        now = self.ledger.clock()

        def first(current: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
            attempts = dict((current or {}).get("first_sent", {}))
            if name in attempts:
                return None  # unchanged
            attempts[name] = now
            return {**(current or {}), "first_sent": attempts}

        state = self.ledger.update_state(event_state_key(event_key), first)
        return float(((state or {}).get("first_sent") or {}).get(name, now))

    def _send_pending(self, name: str, channel: Channel, state: Mapping[str, Any] | None,
                      now: float) -> str:
        """Send the digests of closed windows first; a note for the result ('' if none)."""
        if not storm.pending_count(state):
            return ""
        token = uuid.uuid4().hex
        key = storm_state_key(name)
        leased = self.ledger.update_state(key, lambda s: storm.lease(
            s, now=now, token=token, lease_s=self.lease_s))
        notes = []
        for digest in storm.leased_by(leased, token, name):
            try:
                channel.send(digest_message(digest))
            except RetryableError as exc:
                self.ledger.update_state(key, _releasing(digest, token))
                log.warning("notify %s: digest %s not sent, kept for later: %s", name,
                            digest.id, self._clean(str(exc)))
                notes.append(f"digest of {digest.total} kept for later")
                continue
            except Exception as exc:  # PermanentError, or unclassified: sending again won't help
                # Loud, not silent: the held events' ledger rows already say "digested".
                text = str(exc) if isinstance(exc, PermanentError) else \
                    f"{type(exc).__name__}: {exc}"
                log.error("notify %s: digest %s of %d notifications refused, dropped: %s",
                          name, digest.id, digest.total, self._clean(text),
                          exc_info=not isinstance(exc, PermanentError))
                notes.append(f"digest of {digest.total} refused: {text}")
            else:
                notes.append(f"digest of {digest.total} sent first")
                telemetry.record_digest(name, digest.total)
            self.ledger.update_state(key, _completing(digest))
        return f" ({'; '.join(notes)})" if notes else ""

    def _settle(self, event_key: str, settled: Mapping[str, tuple[str, str]]) -> None:
        if not settled:
            return

        def change(current: Mapping[str, Any] | None) -> Mapping[str, Any]:
            channels = dict((current or {}).get("channels", {}))
            channels.update({name: {"status": status, "detail": detail}
                             for name, (status, detail) in settled.items()})
            return {**(current or {}), "channels": channels}

        self.ledger.update_state(event_state_key(event_key), change)

    def _outcome(self, plan: NotificationPlan, statuses: Mapping[str, str],
                 results: Mapping[str, str]) -> ActionResult:
        if any(status == RETRY for status in statuses.values()):
            raise RetryableError("; ".join(f"{n}: {t}" for n, t in results.items()))
        if any(status == FAILED for status in statuses.values()):
            return ActionResult(Outcome.FAILED, plan.summary(),
                                plan_detail(plan, channels=dict(results)))
        return ActionResult.done(plan, channels=dict(results))

    def flush(self) -> list[str]:
        """Send the digest of every storm window that has closed; one line per digest."""
        now = self.ledger.clock()
        sent = []
        for name, channel in self.channels.items():
            state = self.ledger.update_state(storm_state_key(name), lambda s: storm.flush(
                s, now=now, policy=self.policy))
            note = self._send_pending(name, channel, state, now)
            if note:
                sent.append(f"{name}:{note}")
        return sent

    def _clean(self, text: str) -> str:
        return redact(text, self._secrets)


StateChange = Callable[[Mapping[str, Any] | None], Mapping[str, Any] | None]


def _releasing(digest: Digest, token: str) -> StateChange:
    return lambda state: storm.release(state, digest, token)


def _completing(digest: Digest) -> StateChange:
    return lambda state: storm.complete(state, digest)


def build_channels(settings: ChannelSettings) -> dict[str, Channel]:
    """The configured channels (SDK-backed ones import their SDK on first send)."""
    from handlers.adapters.notify import http as notify_http

    channels: dict[str, Channel] = {}
    s = settings
    if s.smtp_host:
        from handlers.adapters.notify.smtp import SmtpChannel

        channels["smtp"] = SmtpChannel(host=s.smtp_host, port=s.smtp_port,
                                       starttls=s.smtp_starttls, username=s.smtp_username,
                                       password=s.smtp_password, sender=s.smtp_from,
                                       to=s.smtp_to, timeout_s=s.timeout_s, ca_file=s.ca_file)
    if s.acs_endpoint or s.acs_connection_string:
        from handlers.adapters.notify.acs_email import AcsEmailChannel

        channels["acs"] = AcsEmailChannel(endpoint=s.acs_endpoint,
                                          connection_string=s.acs_connection_string,
                                          sender=s.acs_sender, to=s.acs_to,
                                          timeout_s=s.timeout_s,
                                          poll_interval_s=s.acs_poll_interval_s,
                                          ca_file=s.ca_file)
    if s.teams_url:
        channels["teams"] = notify_http.teams(s.teams_url, timeout_s=s.timeout_s,
                                              ca_file=s.ca_file)
    if s.slack_url:
        channels["slack"] = notify_http.slack(s.slack_url, timeout_s=s.timeout_s,
                                              ca_file=s.ca_file)
    if s.webhook_url:
        channels["webhook"] = notify_http.webhook(s.webhook_url, secret=s.webhook_secret,
                                                  timeout_s=s.timeout_s, ca_file=s.ca_file)
    if s.outbox_dir:
        from handlers.adapters.notify.outbox import OutboxChannel

        channels["outbox"] = OutboxChannel(s.outbox_dir)
    return channels


def build_notifier(settings: ChannelSettings, env: Mapping[str, str], ledger: Ledger) -> Notifier:
    """The live Notifier over the configured channels (checked by handlers.adapters first)."""
    return Notifier(build_channels(settings), ledger,
                    storm.StormPolicy(settings.storm_max, settings.storm_window_s),
                    secrets=secret_values(env))
