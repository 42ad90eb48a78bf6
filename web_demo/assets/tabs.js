// Several tabs of one candidate: one writes, the others relay (BroadcastChannel).
//
// The SDK lets one tab per candidate write (a Web Lock); a second tab's login waits for it.
// Meanwhile that tab is a *follower*: it shows the writer's state and sends its edits to the
// writer (the *leader*), which stores them like its own and says when each is durable. An
// edit stays in the follower's `unconfirmed` list until then; if the leader goes away first
// (its tab closed: the browser frees the lock, and the follower's login completes), the new
// leader stores what is still unconfirmed. So an edit made in any tab is stored once.
//
//   follower -> all : hello                      who writes here?
//   leader   -> one : snapshot {state}           what it shows (answers, stage, sync...)
//   leader   -> all : leader                     a (new) leader: send me what is unconfirmed
//   follower -> all : edit {id, quizCode, value} (only the leader acts on it)
//   leader   -> one : applied {id, version}      the edit is durable
//   leader   -> all : event {event}              anything the screen shows, as it happens

export class TabRelay {
  #channel;
  #id = crypto.randomUUID();
  #leader = null; // {snapshot(), apply(quizCode, value)} once this tab writes
  #queue = Promise.resolve(); // the leader applies edits one at a time, in arrival order
  #applied = new Map(); // edit id -> version: an edit sent again is answered, not stored again
  unconfirmed = new Map(); // edit id -> {quizCode, value, to}

  // `onSnapshot(state)` and `onEvent(event)` update a follower's screen.
  constructor(name, { onSnapshot, onEvent }) {
    this.onSnapshot = onSnapshot;
    this.onEvent = onEvent;
    this.#channel = new BroadcastChannel(name);
    this.#channel.onmessage = ({ data }) => this.#receive(data);
    this.#post({ type: "hello" });
  }

  get isLeader() {
    return this.#leader !== null;
  }

  // This tab holds the lock now. Edits other tabs could not get confirmed are applied here.
  async lead(leader) {
    this.#leader = leader;
    const mine = [...this.unconfirmed.values()];
    this.unconfirmed.clear();
    for (const edit of mine) await this.#apply(edit.quizCode, edit.value);
    this.#post({ type: "leader" });
  }

  // A follower's edit, sent to whoever leads (again when a new leader announces itself).
  edit(quizCode, value) {
    const id = crypto.randomUUID();
    this.unconfirmed.set(id, { quizCode, value });
    this.#post({ type: "edit", id, quizCode, value });
  }

  broadcast(event) {
    if (this.isLeader) this.#post({ type: "event", event });
  }

  close() {
    this.#channel.close();
  }

  #post(message) {
    this.#channel.postMessage({ ...message, from: this.#id });
  }

  #apply(quizCode, value) {
    const step = this.#queue.then(() => this.#leader.apply(quizCode, value));
    this.#queue = step.catch(() => {});
    return step;
  }

  async #applyEdit({ id, quizCode, value, from }) {
    let pending = this.#applied.get(id);
    if (!pending) {
      pending = this.#apply(quizCode, value);
      this.#applied.set(id, pending);
      pending.catch(() => this.#applied.delete(id)); // not stored: a resend tries again
    }
    try {
      this.#post({ type: "applied", to: from, id, version: await pending });
    } catch {
      // The follower keeps it unconfirmed; the leader's own screen shows the storage error.
    }
  }

  async #receive(message) {
    if (message.to && message.to !== this.#id) return;
    switch (message.type) {
      case "hello":
        if (this.isLeader) {
          this.#post({ type: "snapshot", to: message.from, state: this.#leader.snapshot() });
        }
        break;
      case "snapshot":
        if (!this.isLeader) this.onSnapshot(message.state);
        break;
      case "leader":
        for (const [id, edit] of this.unconfirmed) {
          this.#post({ type: "edit", id, quizCode: edit.quizCode, value: edit.value });
        }
        this.#post({ type: "hello" });
        break;
      case "edit":
        if (this.isLeader) await this.#applyEdit(message);
        break;
      case "applied":
        this.unconfirmed.delete(message.id);
        break;
      case "event":
        if (!this.isLeader) this.onEvent(message.event);
        break;
    }
  }
}
