"""Who is connected (seed 004): connection_status messages, the state manager that applies them,
the sweeper for sockets of dead processes, and the supervisors' snapshot."""
