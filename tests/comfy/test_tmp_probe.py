from tests.comfy.test_emulator_protocol import *  # noqa

async def test_probe(comfy, http, uploaded, sockets):
    await comfy.set_faults(large_binary_frame=True)
    small = await connect(sockets, comfy, "small")  # websockets' default max_size is 1 MiB
    await submit(http, small_graph("misc/x"), "small", "x-1")
    await small.closed.wait()
    print("close_code", small.close_code, small.connection.protocol.close_sent, small.connection.protocol.close_rcvd, small.types())
