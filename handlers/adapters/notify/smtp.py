"""Email over SMTP (stdlib smtplib): STARTTLS by default, login only when a username is set."""

from __future__ import annotations

import smtplib
import ssl

from handlers.errors import PermanentError, RetryableError
from handlers.notify.message import Message, as_email
from handlers.notify.settings import CA_FILE


class SmtpChannel:
    """Sends each message as one email, over a fresh connection (Functions instances come and go)."""

    name = "smtp"

    def __init__(self, *, host: str, port: int, starttls: bool, username: str, password: str,
                 sender: str, to: tuple[str, ...], timeout_s: float, ca_file: str = "") -> None:
        self._host = host
        self._port = port
        self._starttls = starttls
        self._username = username
        self._password = password
        self._sender = sender
        self._to = to
        self._timeout_s = timeout_s
        self._ca_file = ca_file

    def send(self, message: Message) -> str:
        """Send the email; a short receipt, or RetryableError / PermanentError."""
        mail = as_email(message, self._sender, self._to)
        try:
            with smtplib.SMTP(self._host, self._port, timeout=self._timeout_s) as smtp:
                if self._starttls:
                    smtp.starttls(context=ssl.create_default_context(cafile=self._ca_file or None))
                if self._username:
                    smtp.login(self._username, self._password)
                refused = smtp.send_message(mail)
        except smtplib.SMTPAuthenticationError as exc:
            raise PermanentError(f"smtp: login refused ({exc.smtp_code})") from None
        except smtplib.SMTPRecipientsRefused as exc:
            raise PermanentError(f"smtp: every recipient refused ({len(exc.recipients)})") from None
        except smtplib.SMTPResponseException as exc:
            # 4xx replies are transient by definition (RFC 5321 §4.2.1); 5xx are final.
            text = exc.smtp_error.decode("utf-8", "replace") if isinstance(
                exc.smtp_error, bytes) else str(exc.smtp_error)
            detail = f"smtp: {exc.smtp_code} {text[:200]}"
            if 400 <= exc.smtp_code < 500:
                raise RetryableError(detail) from None
            raise PermanentError(detail) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise PermanentError(f"smtp: server does not support {exc}") from None
        except ssl.SSLCertVerificationError:
            raise PermanentError(f"smtp: server certificate not trusted (see {CA_FILE})") from None
        except (smtplib.SMTPException, OSError) as exc:
            raise RetryableError(f"smtp: {type(exc).__name__}") from None
        delivered = len(self._to) - len(refused)
        return f"accepted for {delivered} of {len(self._to)} recipient(s)"
