from tortoise import BaseDBAsyncClient

RUN_IN_TRANSACTION = True

# error_kind (free-form) becomes error_code (the contract's table) + retryable. Failed rows are
# mapped, and the two kinds whose messages named a server (ComfyUI unreachable, worker lost while
# it was) get the owner's message of today; storage failures were not tagged, their message
# said so.


async def upgrade(db: BaseDBAsyncClient) -> str:
    return """
        ALTER TABLE "restoration_jobs" ADD "error_code" VARCHAR(32);
        ALTER TABLE "restoration_jobs" ADD "retryable" BOOL;
        UPDATE "restoration_jobs" SET
            "error_code" = CASE
                WHEN "error_kind" = 'comfy_unavailable' THEN 'COMFYUI_UNAVAILABLE'
                WHEN "error_kind" = 'comfy_rejected' THEN 'COMFYUI_REJECTED'
                WHEN "error_kind" IN ('comfy_execution', 'comfy_interrupted') THEN 'COMFYUI_ERROR'
                WHEN "error_kind" IN ('comfy_lost', 'worker_lost') THEN 'JOB_LOST'
                WHEN "error_kind" = 'timeout' THEN 'TIMEOUT'
                WHEN "error_message" LIKE 'could not store%' OR "error_message" LIKE 'no object stored%'
                    OR "error_message" LIKE 'storage %' THEN 'STORAGE_ERROR'
                ELSE 'INTERNAL'
            END,
            "retryable" = (
                "error_kind" IN ('comfy_unavailable', 'comfy_interrupted', 'comfy_lost', 'worker_lost', 'timeout')
                OR ("error_kind" = 'comfy_execution' AND "error_message" ILIKE '%out of memory%')
                OR "error_message" LIKE 'could not store%' OR "error_message" LIKE 'no object stored%'
                OR "error_message" LIKE 'storage %'
            )
        WHERE "status" = 'failed';
        UPDATE "restoration_jobs" SET "error_message" = CASE "error_code"
                WHEN 'COMFYUI_UNAVAILABLE' THEN 'ComfyUI, the restoration engine, could not be reached'
                WHEN 'STORAGE_ERROR' THEN 'the image storage could not be reached'
                ELSE 'the job''s worker stopped and ComfyUI could not be reached to recover the result'
            END
        WHERE "status" = 'failed' AND ("error_code" IN ('COMFYUI_UNAVAILABLE', 'STORAGE_ERROR')
            OR ("error_kind" = 'worker_lost' AND "error_message" LIKE '%unavailable at%'));
        ALTER TABLE "restoration_jobs" DROP COLUMN "error_kind";
        COMMENT ON COLUMN "restoration_jobs"."error_code" IS 'COMFYUI_UNAVAILABLE: COMFYUI_UNAVAILABLE\nCOMFYUI_REJECTED: COMFYUI_REJECTED\nCOMFYUI_ERROR: COMFYUI_ERROR\nJOB_LOST: JOB_LOST\nTIMEOUT: TIMEOUT\nSTORAGE_ERROR: STORAGE_ERROR\nINTERNAL: INTERNAL';"""


async def downgrade(db: BaseDBAsyncClient) -> str:
    return """
        ALTER TABLE "restoration_jobs" ADD "error_kind" VARCHAR(32);
        UPDATE "restoration_jobs" SET "error_kind" = CASE "error_code"
                WHEN 'COMFYUI_UNAVAILABLE' THEN 'comfy_unavailable'
                WHEN 'COMFYUI_REJECTED' THEN 'comfy_rejected'
                WHEN 'COMFYUI_ERROR' THEN 'comfy_execution'
                WHEN 'JOB_LOST' THEN 'comfy_lost'
                WHEN 'TIMEOUT' THEN 'timeout'
                WHEN 'STORAGE_ERROR' THEN 'storage'
                ELSE 'internal'
            END
        WHERE "error_code" IS NOT NULL;
        ALTER TABLE "restoration_jobs" DROP COLUMN "retryable";
        ALTER TABLE "restoration_jobs" DROP COLUMN "error_code";"""


MODELS_STATE = (
    "eJztWVtv2zYU/iuEXpYCWZA4aVoYwwDbUVoHjhXIctc1HlRaom01EumQ1BKj63/fIS1HV7"
    "u2l2xOlxdDPhfy6Ds3UuerETGfhOLAJkIyjmXA6AUbGnX01aA4IvCwRGIfGXg6TfmKIPEw"
    "1Co8lXW/sKFm4qGQHHsS+CMcCgIknwiPB1MlprQaKBaE/yRQRh2eb2P4e6CW8JkHawR0/F"
    "3pAR3QdoTHBPXtjkCYE0SZREqQ+HUkJ2SmiVFAJfHRiLNIEREbfiGeRDdkJtDdhFBNhDdA"
    "gdoH+/toSDwMGw+oCMYUVPX65H4acHKAPgf+Z+SzGGCATQVqsWg067fByM9T2GIqXRDYR4"
    "JlOOxOme0x7iM20vvxGKz3MIW90IjFNGOfMgWHjBKNR0wDeF1XsjEBJgdUrv8AckB9ck+E"
    "+nttKJBgVyXuwRvA27pYGiB2bQiJZax9E0/9B45aYXrjjgIS+rk4mC+i6a6cTTWt32+fnW"
    "tJ5Z6h67EwjmgqPZ3JCcTAQjyOA/9A6SjemFDC1baZiKBxGCZBtCDNXxIIksfk4e38lOCT"
    "EY5DFVfGL6OYejoQ9E7q5+TXxLSMmOt2LcftmY7rGqUwVCYUYi0heYyqEIaQUdh+/TZfNw"
    "VEUw21Qet9w947Pn2lIWBCjrlmariMb1oRSzxX1X5KUc74Kw91a4J5NdQZlQLeYO42SC8I"
    "KdRpxi5AXMD0BMAaEb53Q0LHcgJ/a69fr0D6Q8PWYIOURhsKgTevQd2EVZvzFOopymnol0"
    "E2aRxpoNtgFaYeKQGeav97eBtTQn2F2magG1dm96zdfVdHif6AXtlWy+z15kTOPCKEpres"
    "y6uO6ZhndeRBrQoJvMCAnjfaHUUa4SAkfrEKr+PAo9M1/Hd0utR9ipX3nk8oCwQpu+88ZF"
    "hWJ0lGp+C0kVJ6hmmyAtUzq9/smOjKNlvtXtvqql2imbgNU6YiASGQGgPbbHQKIDMejAOK"
    "Qxea4SbVqKj3UpLWK0lJKkIX3hDwkuJWiCfN9H8EOOGccTcC6OCcWAbcIfdLSklJ8UcAfA"
    "W+jvnR0RVEJBVkAeveZePjq1xt6VjddwvxjBtaHatZib4Hd4dtu3B+hR32gQGd9fz3ftvt"
    "dxsfoJ02oPzWUQVR92BNtM0Ls6VbcZGSypi2bdmpgP47oBdW0+1YPaeOFk8D6rQvTasPpO"
    "RhQHuOZTfemYs1cn/h5tR1TLvb6NTR4mmbvn9cWyNnj2tLU1ax8jHDieQz7bpSyDQZCwmm"
    "1Qmb0ysEyhAUdyZSHiNbm5bVyWVrs11Mx/5l04Qj16v8GQB8XW5J6uZScU5ecdDKKm150n"
    "o+YD/GQUuQ2zLAbboE3kS6gCyY+lSnqsOn6vBjZcHPtaOTNydvj09P3oKItvKB8mYF8OVg"
    "vWP8ZuOrc05ph1vIluem05M1SvDpydISrFh5lKHICuLOv3cJd57NebDPACsZRKQa8Cr9Au"
    "5+ssDB4uH5eWHVYQpacM9pXF7lavRZwzEVp5YvIAl1r3g5flgE/dZ23uu2jj5ZXbP4velB"
    "zvlkKJtwLJlL2Z2L/SwmC/KCVPxUwpNvgxv6Oq/54uVd9vIooIGYbOXmguqLn3fZz5kZwI"
    "Zuzms+gpd37huPGvBYNJwlEfhM3J4ky0qvZ+Y7G3o9r/ni9V3xekWya+vV9G50k5ksKcIQ"
    "ezd3mPtuicNqbJlsmRXVoiIFUzzWPlPgKjOTYXGD8MCbGBVj5ISzv2p8jFOZ7w2Nl/v5+8"
    "PRjSadSy9klXeHivtYkqf/bML5lInwKPex5YPNPwkXyqQSsstvZxmVlynCeh+1VVJtgHAi"
    "/gOie3R4uM7Y8fBw+dxR8fLowo6S0IometGzukuOTalKsXsGnkR/oTAQP9j0UYGxel5QHA"
    "0Uep9aQM0L/tNm9u1vgfjfoQ=="
)
