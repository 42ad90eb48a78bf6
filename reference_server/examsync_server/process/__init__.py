"""Running the server as processes: the HTTP server under the app, the private redis-server of
the embedded default, and the supervision of `serve --processes N`."""
