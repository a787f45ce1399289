from tortoise import BaseDBAsyncClient

RUN_IN_TRANSACTION = True


async def upgrade(db: BaseDBAsyncClient) -> str:
    return """
        ALTER TABLE "restoration_jobs" ADD "comfy_server" VARCHAR(255);"""


async def downgrade(db: BaseDBAsyncClient) -> str:
    return """
        ALTER TABLE "restoration_jobs" DROP COLUMN "comfy_server";"""


MODELS_STATE = (
    "eJztWVtv2zYU/iuEXtYCWZA4aVoYwwDZUVoHjhXIcte1HlRaom01EumQ1BKjy3/fIS1HF8"
    "uu7SWbk+XFkM+FPPrOjdT5bsQsIJHYd4iQjGMZMnrOBkYdfTcojgk8LJHYQwaeTDK+Ikg8"
    "iLQKz2S9b2ygmXggJMe+BP4QR4IAKSDC5+FEiSktEyWC8J8EyqnD83UCf/fVEgHzYY2Qjn"
    "4o3ad92orxiKCe0xYIc4Iok0gJkqCO5JhMNTEOqSQBGnIWKyJig2/El+iKTAW6GROqifAG"
    "KFT74GAPDYiPYeM+FeGIgqpen9xOQk720dcw+IoClgAMsKlATRYPp70WGPl1AltMpAcCe0"
    "iwHIfdKLN9xgPEhno/noD1PqawFxqyhObsU6bgiFGi8UhoCK/rSTYiwOSAypc/gBzSgNwS"
    "of5+MRRIsKsS9+EN4G09LA0Q+2IIiWWifZNMgnuOWmFy5Q1DEgWFOJgtoumenE40rddrnZ"
    "5pSeWegeezKIlpJj2ZyjHEwFw8ScJgX+ko3ohQwtW2uYigSRSlQTQnzV4SCJIn5P7tgowQ"
    "kCFOIhVXxi/DhPo6EPRO6uf419S0nJjndWzX61qu5xkLYahMKMVaSvIZVSEMIaOw/X43Wz"
    "cDRFMNtUHzg+m8Ojp5rSFgQo64Zmq4jDutiCWeqWo/ZSjn/FWEujnGvBrqnEoJbzB3G6Tn"
    "hAzqLGPnIM5hegRgjRjfehGhIzmGv7U3b1Yg/dF0NNggpdGGQuDPalAnZdVmPIV6hnIW+o"
    "sgWzSJNdAtsApTnywAnmn/e3gbE0IDhdpmoBuXVue01XlfR6l+n146dtPqdmdEznwihKY3"
    "7YvLtuVap3XkQ62KCLxAn56ZrbYiDXEYkaBchddx4OHJGv47PFnqPsUqei8glIWCLLrvLG"
    "JYVidJTqfktKFSeoJpsgLVU7vXaFvo0rGarW7L7qhd4qm4jjKmIgEhlBoDxzLbJZAZD0ch"
    "xZEHzXCTalTWeylJ65WkNBWhC28I+ILiVoinzfR/BDjhnHEvBujgnLgIuEtul5SSBcXnAP"
    "gKfF3rk6sriEgryBzWVxfmp9eF2tK2O+/n4jk3NNt2oxJ9H+4O23bh4go77AMDOuvZ772W"
    "1+uYH6GdmlB+66iCqHuwJjrWudXUrbhMyWQsx7GdTED/7dNzu+G17a5bR/OnPnVbF5bdA1"
    "L60Kdd13bM99Z8jcJfuDl1XMvpmO06mj9t0/ePamvk7FFtacoqVjFmOJF8ql23EDINxiKC"
    "aXXCFvRKgTIAxZ2JlIfI1oZttwvZ2miV07F30bDgyPW6eAYAXy+2JHVzqTgnrzho5ZW2PG"
    "k9HbAf4qAlyPUiwC26BN5UuoQsmPpYp6qDx+rwI2XBz7XD47fH745Ojt+BiLbynvJ2BfCL"
    "wXrD+NXGV+eC0g63kC3PTSfHa5Tgk+OlJVixiihDkRXEm33vEt4sm4tgnwJWMoxJNeBV+i"
    "Xcg3SB/fnD0/PCqsMUtOCua15cFmr0qelailMrFpCU+qp8Ob5fBP3Wcj/oto4+2x2r/L3p"
    "Xs79bCibcCKZR9mNh4M8JnPynFTwuK++VHqC8D8J3yS1ynrPL7se68sUTz/FbphaRc2XpN"
    "rlpBqGNBTjrdxcUn3x8y77OTdy2dDNRc0H8PLOfVJT8zSbRtM0Ap+I29NkWen13DhtQ68X"
    "NV+8viter0h2bb0alg6vcoM8RRhg/+oG88Bb4LAaWya7yIprcZmCKR5pnylwlZnpbN4kPP"
    "THRsXUPuXsrZrW40zmRzP65X7+8Sx6o8Hy0vtv5VWt4vqb5uk/Gyg/ZiI8yPV3+RwZTt1C"
    "mbTBiT2n8jK0We+0rpJqA4RT8WeI7uHBwTpT3oOD5WNexbsrXT2pJLSiiZ537c6yW+e9Sr"
    "l7hr5Ef6EoFM9s2KvAWD2eKU9iSr1PLaDGM/9pM7v7G5jdVTs="
)
