"""The one HTTP/1.1 client of the program: connections, response parsing, proxies, the
address rules, and its errors."""
