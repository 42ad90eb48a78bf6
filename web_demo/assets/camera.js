// Webcam frames when the plan requires a camera: every `camera_capture_interval` seconds one
// frame of the camera (getUserMedia -> canvas -> JPEG) is handed to `store(bytes, takenAt)`,
// which gives it to the SDK (client.uploads.capture): stored in IndexedDB first, then sent to
// POST /api/v1/captures with its SHA-256 and retried until the server has it, offline or not.

export class Camera {
  #video;
  #timer = null;

  constructor(video, store, onError) {
    this.#video = video;
    this.store = store;
    this.onError = onError;
  }

  async start(intervalSeconds) {
    try {
      this.#video.srcObject = await navigator.mediaDevices.getUserMedia({
        video: { width: 640 },
        audio: false,
      });
      await this.#video.play();
    } catch (error) {
      this.onError(`${error.name}: ${error.message}`);
      return;
    }
    const every = Math.max(1, Number(intervalSeconds) || 10) * 1000;
    this.#timer = setInterval(() => this.capture(), every);
    await this.capture();
  }

  stop() {
    clearInterval(this.#timer);
    for (const track of this.#video.srcObject?.getTracks() ?? []) track.stop();
  }

  async capture() {
    const video = this.#video;
    if (!video.videoWidth) return;
    const takenAt = Date.now() / 1000;
    const canvas = document.createElement("canvas");
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.8));
    try {
      await this.store(new Uint8Array(await blob.arrayBuffer()), takenAt);
    } catch (error) {
      this.onError(
        String(error?.message ?? error)
          .trim()
          .split("\n")
          .pop(),
      );
    }
  }
}
