"""What candidates upload beside answers: captures (webcam, screen, mobile, audio) and log
batches, received over HTTP and written by their sinks."""
