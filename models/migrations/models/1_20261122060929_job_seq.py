from tortoise import BaseDBAsyncClient

RUN_IN_TRANSACTION = True


async def upgrade(db: BaseDBAsyncClient) -> str:
    return """
        ALTER TABLE "restoration_jobs" ADD "seq" INT NOT NULL DEFAULT 0;"""


async def downgrade(db: BaseDBAsyncClient) -> str:
    return """
        ALTER TABLE "restoration_jobs" DROP COLUMN "seq";"""


MODELS_STATE = (
    "eJztmf9P4zYUwP8VK7+MkxiC0uud0DSp1+buciotast2OpiCmzitr4ldbGdQMf73+bkp+d"
    "aUlh0bMH6pmvfFdj7v+Tm2b6yI+ySUe30iFRdYUc6+8JF1hG4shiOi/1RY7CILz2apHgQK"
    "j0LjIlJb9zsfGSUeSSWwp7Q+wKEkWuQT6Qk6AzPwaqJYEvGTRBl3/f8y1o970ITPPd0GZe"
    "N7rc/ZOXMiPCbotN+RCAuCGFcIDIl/hNSEzI0wokwRHwWCRyBEfPSdeApNyVyiqwlhRqjf"
    "AFHoB/u7aEQ8rDs+Z5KOmXY17ZPrGRVkD11Q/wL5PNYYdKcStXgUzE8dPciLme5iplxtsI"
    "skz2j4FQzb48JHPDD9iViP3sNM94UCHrPM+GAoOOSMGB4xo/p1XcXHRCuFpnL2hxZT5pNr"
    "IuHxzAJIulcw9/Qb6Ld1sbK02ZklFVaxiU088+800MJs6gaUhH4uDxaNGLmr5jMjOz112h"
    "+NJYRn5Ho8jCOWWs/maqJzYGkex9TfAx/QjQkjArrNZASLwzBJoqVo8ZJaoERM7t7OTwU+"
    "CXAcQl5ZvwQx80wimJ7gp/5rMrSMmet2e0N3YA9d1yqlIQyhkGuJyOMMUlinDLC9uV20mw"
    "IxUgs6aH1u9ncOG28MAi7VWBilwWXdGkes8MLVxCmlnIlXHnVrgsVq1BmXAm893IeQXgpS"
    "1OmMXUJcYnoEsFaEr92QsLGa6Mfa27drSP/W7BvY2srQ1oXAW9SgbqKqLXRAPaWcpn4Zss"
    "3iyIB29Kgw80gJeOr97/G2ZoT5QG076NaJ3W073U9HKPE/Zyf9XsseDBZCwT0ipZG3escn"
    "HXtot4+Qp2tVSPQLnLOPTacDogDTkPjFKrxJAA8aG8TvoFEZPlDlo+cTxqkk5fB9DDlWqy"
    "dJxqcQtACcnuE0WUO13Tv90LHRSd9uOQOn14Veorm8DFMliLSAKsOgbzc7Bchc0DFlOHT1"
    "YrhNNSr6vZakzUpSMhX1Krwl8JLjg4gni+n/CDgRggs30uj0d2IZ+JBcV5SSkuNLAL6G79"
    "D+OjQVRCYVZIl157j59U2utnR63U9L80wYWp3eh5X0p/ptt8n1vNdL4J5P9MPaBnl+WKtM"
    "c1CVygp8fa741lmzWGadHrhaPjHMj7xYSnJZBuywCryJdYGsHupjrYz7j5W8YxjBz7WD+r"
    "v6+8NG/b02MaO8k7xbA97pDgsYr7iYbr39yTm9vJLQqG9QEhr1ypIAqjzlkGBJ3MWZhXQX"
    "szkPu61ZKRqR1cBX+Re4+0kDe8s/zy8K6xZE59geDJvHJ7lVsd0c2qCp5QtIIt0pbnDuGk"
    "G/O8PPCB7Rt17XLp4Z3NkNv1kwJhwr7jJ+5WI/y2QpXoqK212RnO9sGeu852uUn3KUA8qo"
    "nDwozAXX1zg/5ThnznG3DHPe8wdE+cnt0+GQvsfCeZKBzyTsyWRZG/XMGf2WUc97vkb9qU"
    "R9xWQ3o4cbmGCauR0AwQh70yssfLek4TVeZVtWRbWoKMEMj03MAC4MM7nwaxJBvYm14iow"
    "0eyuuwLEqc19F3/Vcb7/gmur26rKDdnKvcOK/VgyT//ZLdVjToQfsh+rvpz6kwgJQyqRrd"
    "6dZVxeT4I3O5iESbUF4cT8BdI92N/f5Opof7/67gh0ebq6R0XYikX0y6DXrfhsSl2Kqyf1"
    "FPoLhVS+sBskgLH+zLd4vFtY+6ABOPP9Txez278BiT8tSg=="
)
