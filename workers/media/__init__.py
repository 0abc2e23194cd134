"""Media: decoding untrusted image bytes, reading a post's media (a file, or a URL through
`workers.net`), and the concurrent fetcher for exports."""
