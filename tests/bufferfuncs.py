"""Worker-side functions of the large-data tests."""


def poke(buffer, value):
    """Write into an argument received out of band; return its size and head."""
    buffer[0] = value
    return len(buffer), bytes(buffer[:4])


def make_bytearray(size, fill):
    return bytearray([fill]) * size


def make_bytes(size):
    return bytes(size)


def checksum(*buffers):
    return [sum(memoryview(b).cast("B")[::4096]) for b in buffers]
