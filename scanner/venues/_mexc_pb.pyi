"""Type stub for the compiled canonical decoder (scanner/venues/_mexc_pb.c); see scanner.venues.mexc_pb."""

from scanner.venues.mexc_pb import Push

def decode_canonical(data: bytes, /) -> Push | None: ...
