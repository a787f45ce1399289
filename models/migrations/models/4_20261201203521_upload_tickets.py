from tortoise import BaseDBAsyncClient

RUN_IN_TRANSACTION = True


async def upgrade(db: BaseDBAsyncClient) -> str:
    return """
        CREATE TABLE IF NOT EXISTS "upload_tickets" (
    "id" UUID NOT NULL PRIMARY KEY,
    "user_id" VARCHAR(255) NOT NULL,
    "size" BIGINT NOT NULL,
    "content_type" VARCHAR(255),
    "expires_at" TIMESTAMPTZ NOT NULL,
    "used_at" TIMESTAMPTZ,
    "created_at" TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS "idx_upload_tick_expires_ddb791" ON "upload_tickets" ("expires_at");
COMMENT ON TABLE "upload_tickets" IS 'Issued by `POST /uploads` (or `createUpload`), used at most once by the restore.';"""


async def downgrade(db: BaseDBAsyncClient) -> str:
    return """
        DROP TABLE IF EXISTS "upload_tickets";"""


MODELS_STATE = (
    "eJztWm1z2jgQ/isaf2kyk8sl5PWYm5sB4qRkCM6A6fVaboywBXFjJGrJJVyv//1WsolfoU"
    "CTlvT4wuB9kVbPSivtSp+1EXOIx/dbhAvmY+Eyes36Whl91igeEfgzR2IPaXg8jvmSIHDf"
    "Uyp+LGt9YH3FxH0ufGwL4A+wxwmQHMJt3x1LMalVQQEn/iuOEurw/2MAn/uyCYfZ0IZLh1"
    "+V7tIurY/wkKBOq8ER9gmiTCApSJwyEndkqogjlwrioIHPRpKIWP8DsQW6J1OOJneEKiKM"
    "ALmyH+zsoT6xMXTcpdwdUlBV7ZOHseuTfdRznR5yWAAwQKcc1dhoMO3UwcjeGLoYCwsE9h"
    "BnCQ6bSLNt5juIDVR/fgDW25hCX2jAApqwT5qCPUaJwiOgLgzXEmxIgOkDKu//BrJLHfJA"
    "uPx8r0mQoFcpbsMIYLQWFhqIvde4wCJQvgnGziNHtjC+twYu8ZzUPAgbUXRLTMeK1unULy"
    "6VpHRP37KZF4xoLD2eijuYAzPxIHCdfakjeUNCiS+7TcwIGnheNIlmpHCQQBB+QB5H58QE"
    "hwxw4Ml5pf0+CKitJoLqSf4c/xGZlhCzrKZhWm3dtCwtNw2lCZm5FpFsRuUUhikjsf38JW"
    "w3BkRRNdlB7XWltXN0uqsgYFwMfcVUcGlflCIWOFRVfopRTvgrDXXtDvvFUCdUMniDuesg"
    "PSPEUMcrdgbiDKZnAFYb4QfLI3Qo7uCzdHKyAOk3lZYCG6QU2hAI7DAGNSNWKeRJ1GOU46"
    "mfB1mnwUgBXQerMLVJDvBY+/vhrY0JdSRqq4Gu3erNi3rzqowi/S69bRk1vd0OiT6zCeeK"
    "XjNubhu6qV+UkQ2xyiMwgC69rNQbkjTArkecbBRexoGHp0v47/B0rvskK+09h1DmcpJ336"
    "XHsCheJAmdjNMGUukFLpMFqF4YnWpDR7ctvVZv142m7GU05R+9mClJQHCFwqClVxoZkJnv"
    "Dl2KPQs2w1WiUVZvG5KWC0nRUoRdeEXAc4prIR5tpv8jwInvM98aAXRwTswDbpKHOaEkp/"
    "gzAL4AX1N/a6oIwqMIMoN156bydjcVWxpG82omnnBDrWFUC9G3IXdYdxdOt7DBPtBgZ738"
    "q1O3Os3KG9hOKxB+y6iAqPZgRWzp13pNbcVZSiyjt1pGKxZQn116bVSthtE2y2j2r0vN+o"
    "1udIAU/enStmm0Klf6rI3UJ2ROTVNvNSuNMpr9W2ffPyotsWaPSnOXrGSl54xPhD9VrstN"
    "mSpjHsG0eMGm9DITpQ+KGzNTnmK1Vg2jkVqt1Xp2OXZuqjocuXbTZwDwdX5LkplLwTl5wU"
    "ErqbTmSevlgP0UBy1OPuYBrtM58EbSGWTB1Oc6VR081w4/lBb8Ujo8Pjs+Pzo9PgcRZeUj"
    "5WwB8PnJOmH+/cqpc0ppg7eQNc9Np8dLhODT47khWLLSKEOQ5cQK613cCldzGuwLwEq4I1"
    "IMeJF+BncnamB/9ufleWHRYQq24LZZublNxeiLiqlLTikdQCLqTjY5fmwE/Vk3X6ttHb0z"
    "mnq23vQoZ77TpE04EMyibGJhJ4nJjDwjpTxuy0qlxYn/ifirLK2s3s+3up6rMuVHpdgVl1"
    "Zac7uoNnlRDVzq8ru13JxR3fp5k/2cuHJZ0c1pzSfw8saV1OR9mkG9aTQDX4jbo8Wy0OuJ"
    "67QVvZ7W3Hp9U7xesNiV9fKydHCfuMiThD627yfYd6wch5XYPNk8a1QaZSmY4qHymQRXmh"
    "ndzXfGkFk7pmvfE6EV3N2n+HuLbu4DJWkJJbrkvX2d84A4qD9FvVujbaJfw0Z4D+0wH/XC"
    "SBaa0Nvdk9f2DsICjQB+xKhNpKa691YX+SR/1f/UHcjXAab8ZhPEAuG5nwhHruBSEwVUuB"
    "7qxSlK7/HSXzUS3fvfdkx594/g1DXl6BP2XCdSBSFoH1OwAdmeSyhYgqcg6Hoe4gTogkFv"
    "5bC1CSFjBG4ggsgnBzAQOC/L5wbQMPga2nTgW4qGPnnF5esEaH8gpJyI3h44e6rfcJhssv"
    "TzgEQmtr353978/+jd4TvkV+4/ReVjdzi/4hZpfL+S23MiHFbdfiuVjo7OSgdHp+cnx2dn"
    "J+cHj+W3PGtRHa5av5KluBT++docGCEgDobYrTC/s3rbGsJyN5trl+eevDC3afP/5Z43C9"
    "IMvl6OwbfFgxfh323xYH4QfZlp5LziwYakkRXiu/adVpBARpy9RakjjmW+ljLO9/PXc5aV"
    "spS5h7rCQ3PBkS7y2LdlJ89/nvvGW9T5SQkko1yatMKhLaGyTUqWO7DJRbUCwpH4T4ju4c"
    "HBMo+FDw7mvxaWvMLsI4/wddtoLkw8inZP1xboX+S5/CWmfwvAlWCktsjcK7/sg77M3icb"
    "kK/8fuhm9uU/DpzvwA=="
)
