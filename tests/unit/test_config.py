"""Settings: defaults that run a fresh clone, one clear line per bad value, secrets from files."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker_app.config import SANDBOX_TELEGRAM_TOKEN, load_settings
from worker_app.errors import ConfigurationError


def test_no_environment_at_all_points_at_the_local_services_and_the_sandbox() -> None:
    settings = load_settings({})
    assert settings.database_url.get_secret_value() == "postgresql+psycopg://postgres@127.0.0.1:5432/cybervpn"
    assert settings.rabbitmq_url.get_secret_value().startswith("amqp://guest:guest@127.0.0.1:5672")
    assert settings.telegram_bot_token.get_secret_value() == SANDBOX_TELEGRAM_TOKEN
    assert settings.admin_telegram_ids == []
    assert (settings.result_ttl_seconds, settings.notification_max_retries, settings.metrics_port) == (
        3600,
        5,
        9090,
    )


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"DATABASE_URL": "nonsense"}, "DATABASE_URL: expected a URL like postgresql+psycopg://"),
        ({"DATABASE_URL": "mysql://u@h/db"}, "DATABASE_URL: expected a postgresql://"),
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL: expected a URL like redis://"),
        ({"RABBITMQ_URL": "http://x"}, "RABBITMQ_URL: expected a URL like amqp://"),
        (
            {"ADMIN_TELEGRAM_IDS": "1,two"},
            "ADMIN_TELEGRAM_IDS: expected comma-separated integer Telegram ids",
        ),
        ({"WORKER_CONCURRENCY": "0"}, "WORKER_CONCURRENCY: Input should be greater than or equal to 1"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT: Input should be 'json' or 'text'"),
        ({"TELEGRAM_API_URL": "api.telegram.org"}, "TELEGRAM_API_URL: expected an http:// or https:// URL"),
        (
            {"TIME_LIMIT_MS": "1800000"},
            "TIME_LIMIT_MS (1800000) must be below RABBITMQ_CONSUMER_TIMEOUT_MS",
        ),
        (
            {"TIME_LIMIT_MS": "20000"},
            "NOTIFICATION_DRAIN_BUDGET_S (25.0) must be below TIME_LIMIT_MS (20000 ms)",
        ),
        (
            {"TELEGRAM_GLOBAL_RATE_PER_S": "-1"},
            "TELEGRAM_GLOBAL_RATE_PER_S: Input should be greater than or equal to 0",
        ),
        (
            {"DEAD_LETTER_RETENTION_DAYS": "7"},
            "DEAD_LETTER_RETENTION_DAYS: Input should be greater than or equal to 30",
        ),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(env: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(env)
    message = str(caught.value)
    assert message.startswith("invalid configuration: ")
    assert expected in message
    assert "\n" not in message


def test_admin_ids_are_comma_separated_integers() -> None:
    assert load_settings({"ADMIN_TELEGRAM_IDS": " 111, 222 ,"}).admin_telegram_ids == [111, 222]


def test_a_secret_can_come_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("555:from-a-docker-secret\n")
    settings = load_settings({"TELEGRAM_BOT_TOKEN_FILE": str(secret)})
    assert settings.telegram_bot_token.get_secret_value() == "555:from-a-docker-secret"


def test_the_variable_itself_wins_over_its_file(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("from-file")
    settings = load_settings({"CRYPTOBOT_TOKEN": "from-env", "CRYPTOBOT_TOKEN_FILE": str(secret)})
    assert settings.cryptobot_token.get_secret_value() == "from-env"


def test_an_unreadable_secret_file_is_named() -> None:
    with pytest.raises(ConfigurationError, match="DATABASE_URL_FILE: cannot read '/nonexistent/db'"):
        load_settings({"DATABASE_URL_FILE": "/nonexistent/db"})


def test_secrets_are_never_shown_by_repr() -> None:
    settings = load_settings(
        {"TELEGRAM_BOT_TOKEN": "777:very-secret", "DATABASE_URL": "postgresql://u:pw1234@h/d"}
    )
    assert "very-secret" not in repr(settings)
    assert "pw1234" not in repr(settings)
    assert {"777:very-secret", "pw1234"} <= set(settings.secret_values())


def test_rabbitmq_url_may_name_every_node_of_a_cluster() -> None:
    from worker_app.config import load_settings

    urls = "amqp://u:secret-1@n1:5672/cv, amqp://u:secret-2@n2:5672/cv;amqp://u:secret-3@n3:5672/cv"
    settings = load_settings({"RABBITMQ_URL": urls})
    assert settings.rabbitmq_urls == [
        "amqp://u:secret-1@n1:5672/cv",
        "amqp://u:secret-2@n2:5672/cv",
        "amqp://u:secret-3@n3:5672/cv",
    ]
    assert {"secret-1", "secret-2", "secret-3"} <= set(settings.secret_values())
    with pytest.raises(ConfigurationError, match="every URL must name the same vhost"):
        load_settings({"RABBITMQ_URL": "amqp://n1:5672/a,amqp://n2:5672/b"})
    with pytest.raises(ConfigurationError, match="several separated by commas"):
        load_settings({"RABBITMQ_URL": "amqp://n1:5672/a,http://n2"})
