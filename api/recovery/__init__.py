"""Accepted work that lost its worker or its message is found and sent again, or failed
explicitly (`sweeper`): nothing accepted ends without an answer."""
