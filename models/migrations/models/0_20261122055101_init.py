from tortoise import BaseDBAsyncClient

RUN_IN_TRANSACTION = True


async def upgrade(db: BaseDBAsyncClient) -> str:
    return """
        CREATE TABLE IF NOT EXISTS "restoration_jobs" (
    "id" UUID NOT NULL PRIMARY KEY,
    "user_id" VARCHAR(255) NOT NULL,
    "status" VARCHAR(16) NOT NULL,
    "denoise" DOUBLE PRECISION NOT NULL,
    "original_key" VARCHAR(255) NOT NULL,
    "processed_key" VARCHAR(255),
    "error_message" TEXT,
    "error_kind" VARCHAR(32),
    "progress" DOUBLE PRECISION,
    "worker_id" VARCHAR(64),
    "lease_expires_at" TIMESTAMPTZ,
    "started_at" TIMESTAMPTZ,
    "finished_at" TIMESTAMPTZ,
    "created_at" TIMESTAMPTZ NOT NULL,
    "updated_at" TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS "idx_restoration_user_id_b503c4" ON "restoration_jobs" ("user_id", "created_at");
CREATE INDEX IF NOT EXISTS "idx_restoration_status_d474cc" ON "restoration_jobs" ("status", "updated_at");
COMMENT ON COLUMN "restoration_jobs"."status" IS 'PENDING: pending\nPROCESSING: processing\nCOMPLETED: completed\nFAILED: failed';
COMMENT ON TABLE "restoration_jobs" IS 'A user''s restoration request.';
CREATE TABLE IF NOT EXISTS "aerich" (
    "id" SERIAL NOT NULL PRIMARY KEY,
    "version" VARCHAR(255) NOT NULL,
    "app" VARCHAR(100) NOT NULL,
    "content" JSONB NOT NULL
);"""


async def downgrade(db: BaseDBAsyncClient) -> str:
    return """
        """


MODELS_STATE = (
    "eJztWW1v2zYQ/iuEviwFsiBxXLcIhgGurbQqHDuwla1oMii0RNmsJdIlqSZGlv8+Hi1Hb7"
    "ZjZ8uWZPliWM/dkcfnjse3GyvmAYnkXp9IxQVWlLPPfGgdoRuL4ZjoPys0dpGFp9NMDoDC"
    "w8iYiEzX+8aHRoiHUgnsKy0PcSSJhgIifUGnoAZWTZRIIn6SKGeu/39P9OceNBFwX7dB2e"
    "he7Qt2wZwYjwg663ckwoIgxhUCRRIcITUmMwPGlCkSoFDwGEDEh9+Ir9CEzCS6GhNmQD0C"
    "RKEfHOyiIfGx7viCSTpi2tS0T66nVJA9dEmDSxTwRNOgO5WoxeNwduZoJy+nuoup8rTCLp"
    "I8J+FX4LbPRYB4aPoTifbex0z3hUKesJx/4AqOOCOGj4RRPVxP8RHRQqFZOf9Dw5QF5JpI"
    "+Dy3gCTdK6j7egR6tB5WllY7t6TCKjGxSabBnQRamE68kJIoKOTBvBGDe2o2NdjZmdM+Np"
    "oQnqHn8yiJWaY9namxzoGFepLQYA9sQDYijAjoNpcRLImiNIkW0HyQGlAiIXejCzIgICFO"
    "Isgr65cwYb5JBNMT/NR/TV3LqXlet+d6A9v1PKuShuBCKddSyOcMUlinDHB7cztvNyPEoB"
    "Z00PrU7O8cNt4YCrhUI2GEhi7r1hhiheemJk4Zy7l4FalujbFYTnXOpMS3dvchTC+AjOps"
    "xi5IXND0CMRaMb72IsJGaqw/a2/frmH6t2bfkK21DNu6EPjzGtRNRbW5DFjPWM5Sv0qyzZ"
    "LYEO1orzDzSYXwzPrf49uaEhYAa9uRbp3a3bbT/XiEUvsLdtrvtezBYA4K7hMpDd7qnZx2"
    "bNduHyFf16qI6AFcsOOm0wEoxDQiQbkKbxLAg8YG8TtorAwfiIrRCwjjVJJq+I4jjtXySZ"
    "KzKQUtBKNnOE3WsNrunX3o2Oi0b7ecgdPrQi/xTH6PMiFAGqDKcNC3m50SyVzQEWU48vRi"
    "uE01Ktu9lqTNSlI6FfUqvCXhFcMHMZ4upv8jwokQXHixpk7vE6uEu+R6RSmpGL4Ewtfw69"
    "pfXFNBZFpBFrTunDS/vCnUlk6v+3GhngtDq9P7sJT9iR7tNrletHoJvBcT/bC2QZ4f1lam"
    "OYgqZQV2n0v2OmsWy7zRA1fLJ0bzIy+WV1xMtt63F4xeXi436hvkcqO+MpdBVGQ5IlgSb3"
    "7Ylt48DYtktzVXisZkOeHL7Eu8B2kDe4s/zy8K6yq5c2IP3ObJaaGct5uuDZJaMfNTdKe8"
    "M79rBP3uuJ8QfKKvva5dPuze6blfLfAJJ4p7jF95OMhzsoAXUPmcJtKLiS1jXbR8jfJTjn"
    "JIGZXjB4W5ZPoa56cc59wF5JZhLlr+A1F+cgdMuF3usWiWZuAzCXs6WdZGPXe5vGXUi5av"
    "UX8qUV8y2Y338HQQTnLX2gAMsT+5wiLwKhJe46t0q6K4FpcRzPT5O0jJBTfTl6omEdQfW0"
    "vesFLJ7rq3K5zp3PditTrO97/MbPXM4rAVB7WlZwedXeW5kM7Tv/e88pgTYQQu/Fw7qL+r"
    "vz9s1N/vwm5dQ3fIuzVzw+m697yq/CBCgksVZlefznImr1eYm92owaTaguFU/QWye7C/v8"
    "mbx/7+6kcPkBXZ1T0qwpYsop8Hve6KbVNmUl49qa/Qnyii8oU9fQAZ6y8ry/eSpbUPGoDL"
    "yv90Mbv9Cz5ax/o="
)
