// Webcam captures when the plan requires a camera: every `camera_capture_interval` seconds a
// frame of the camera (getUserMedia -> canvas -> JPEG) goes to POST /api/v1/captures with its
// SHA-256. Captures taken offline wait in memory (the newest MAX_WAITING) and go when the
// server answers again; the server takes a repeated captureId once.

import { sha256Hex } from "./common.js";

const MAX_WAITING = 30;

export class Camera {
  #video;
  #token;
  #timer = null;
  #waiting = [];
  #sending = false;
  stats = { taken: 0, uploaded: 0, waiting: 0, error: null };

  constructor(video, token, onChange) {
    this.#video = video;
    this.#token = token;
    this.onChange = onChange;
  }

  async start(intervalSeconds) {
    try {
      const stream = await navigator.mediaDevices.getUserMedia({
        video: { width: 640 },
        audio: false,
      });
      this.#video.srcObject = stream;
      await this.#video.play();
    } catch (error) {
      this.#report(`${error.name}: ${error.message}`);
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
    const canvas = document.createElement("canvas");
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.8));
    const bytes = new Uint8Array(await blob.arrayBuffer());
    this.#waiting.push({
      bytes,
      captureId: crypto.randomUUID(),
      capturedAt: new Date().toISOString(), // UTC with milliseconds and Z
    });
    this.#waiting.splice(0, Math.max(0, this.#waiting.length - MAX_WAITING));
    this.stats.taken += 1;
    await this.#send();
  }

  async #send() {
    if (this.#sending) return;
    this.#sending = true;
    try {
      while (this.#waiting.length) {
        const capture = this.#waiting[0];
        if (!(await this.#upload(capture))) break;
        this.#waiting.shift();
        this.stats.uploaded += 1;
      }
    } finally {
      this.#sending = false;
      this.#report(this.stats.error);
    }
  }

  async #upload({ bytes, captureId, capturedAt }) {
    const hex = await sha256Hex(bytes);
    const query = new URLSearchParams({ kind: "webcam", captureId, capturedAt });
    try {
      const response = await fetch(`/api/v1/captures?${query}`, {
        method: "POST",
        headers: {
          Authorization: `Bearer ${this.#token}`,
          "Content-Type": "image/jpeg",
          "X-Content-SHA256": hex,
        },
        body: bytes,
      });
      if (response.ok) {
        this.stats.error = null;
        return true;
      }
      this.stats.error = `HTTP ${response.status}`;
      if (response.status < 500 && ![408, 429].includes(response.status)) {
        this.#waiting.shift(); // refused for good (a server without captures: 404): drop it
      }
    } catch (error) {
      this.stats.error = `offline (${error.message})`;
    }
    return false;
  }

  #report(error) {
    this.stats.error = error;
    this.stats.waiting = this.#waiting.length;
    this.onChange(this.stats);
  }
}
