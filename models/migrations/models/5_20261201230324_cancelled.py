from tortoise import BaseDBAsyncClient

RUN_IN_TRANSACTION = True

# A new job status, `cancelled`. The column is a VARCHAR(16) without a CHECK constraint (on
# PostgreSQL and in the SQLite file of `restoration dev` alike), so only its comment changes.
# Going back, the previous version knows no such status: cancelled jobs become failed ones that
# say so (INTERNAL is the contract's "anything else"; submitting again would work).


async def upgrade(db: BaseDBAsyncClient) -> str:
    return """
        COMMENT ON COLUMN "restoration_jobs"."status" IS 'PENDING: pending\nPROCESSING: processing\nCOMPLETED: completed\nFAILED: failed\nCANCELLED: cancelled';"""


async def downgrade(db: BaseDBAsyncClient) -> str:
    return """
        UPDATE "restoration_jobs" SET "status" = 'failed', "error_code" = 'INTERNAL', "retryable" = TRUE,
            "error_message" = 'the job was cancelled by its owner'
        WHERE "status" = 'cancelled';
        COMMENT ON COLUMN "restoration_jobs"."status" IS 'PENDING: pending\nPROCESSING: processing\nCOMPLETED: completed\nFAILED: failed';"""


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
    "XjNubhu6qV+UkQ2xyiMwgC69rNQbkjTArie/a5VmTW8oki3B8YCajc3LuPXwdAmvHp7Oda"
    "pkpX3qEMpcTvJOvfQYFsVLJ6GTceVAKr3AxbMA1QujU23o6Lal1+rtutGUvYym/KMXMyUJ"
    "CK5QGLT0SiMDMvPdoUuxZ8EWuUqMyuptA9VygSpaoLA3rwh4TnEtxKMt9n8EOPF95lsjgA"
    "5Oj3nATfIwJ5TkFH8GwBfga+pvTRVBeBRBZrDu3FTe7qZiS8NoXs3EE26oNYxqIfo2ZBTr"
    "7s3pFjbYBxrst5d/depWp1l5A5tsBcJvGRUQ1c6siC39Wq+pDTpLiWX0VstoxQLqs0uvja"
    "rVMNpmGc3+dalZv9GNDpCiP13aNo1W5UqftZH6hHyqaeqtZqVRRrN/6+z7R6Ul1uxRae6S"
    "laz0nPGJ8KfKdbkpU2XMI5gWL9iUXmai9EFxY2bKU6zWqmE0Uqu1Ws8ux85NVYcj1276DA"
    "C+zm9JMp8pOD0vOGglldY8ab0csJ/ioMXJxzzAdToH3kg6gyyY+lynqoPn2uGH0oJfSofH"
    "Z8fnR6fH5yCirHyknC0APj9ZJ8y/XzmhTilt8Bay5rnp9HiJEHx6PDcES1YaZQiynFhhFY"
    "xb4WpOg30BWAl3RIoBL9LP4O5EDezP/rw8Lyw6TMEW3DYrN7epGH1RMXXJKaUDSETdySbH"
    "j42gP+vma7Wto3dGU89WoR7lzHeatAkHglmUTSzsJDGZkWeklMdtWb+0OPE/EX+VpZXV+/"
    "lW13PVq/yoQLvi0kprbhfVJi+qgUtdfreWmzOqWz9vsp8TFzErujmt+QRe3riSmrxlM6g3"
    "jWbgC3F7tFgWej1xybai19OaW69vitcLFruyXl6hDu4T13uS0Mf2/QT7jpXjsBKbJ5tnjU"
    "qjLAVTPFQ+k+BKM6Mb+84YMmvHdO17IrSCG/0Uf2/RfX6gJC2hRJe8za9zHhAH9aeod2u0"
    "TfRr2AjvoR3mo14YyUITert78jLfQVigEcCPGLWJ1FS34ep6n+QfADx1B/LNgCm/2QSxQH"
    "juJ8KRK7jURAEVrod6cYrSe3wKoBqJXgPcdkz5IgDBqWvK0SfsuU6kCkLQPqZgA7I9l1Cw"
    "BE9B0PU8xAnQBYPeymFrE0LGCNxABJEPEWAgcF6WjxCgYfA1tOnAtxQNffKKyzcL0P5ASD"
    "kRvUhw9lS/4TDZZOlHA4lMbPseYPse4EfvDt8hv3L/KSofu8P5FbdI4/uV3J4T4bDq9lup"
    "dHR0Vjo4Oj0/OT47Ozk/eCy/5VmL6nDV+pUsxaXwz9fmwAgBcTDEboX5ndXb1hCWu9lcuz"
    "z35IW5TZv/L/e8WZBm8PVyDL4tHrwI/26LB/OD6MtMI+cVDzYkjawQ37XvtIIEMuLsLUod"
    "cSzztZRxvp+/nrOslKXMPdQVHpoLjnSRx74tO3n+89w33qLOT0ogGeXSpBUObQmVbVKy3I"
    "FNLqoVEI7Ef0J0Dw8OlnksfHAw/7Ww5BVmH3mEr9tGc2HiUbR7urZA/yLP5S8x/VsArgQj"
    "tUXmXvllH/Rl9j7ZgHzl90M3sy//AV8F9vo="
)
