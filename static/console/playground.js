/*
 * The console playground: a chat over the websocket chat (/ws/chat/, docs/WEBSOCKET.md),
 * as the signed-in console user acting for the tenant picked on the page.
 *
 * Model output is untrusted: it only ever reaches the page as text nodes / textContent,
 * never as HTML. Latency is measured here, in the browser, because that is what the person
 * trying a model feels (the server's own figures are in the usage records).
 */
(function () {
  "use strict";

  var root = document.getElementById("playground");
  if (!root) {
    return;
  }

  var RECONNECT_FIRST_MS = 1000;
  var RECONNECT_MAX_MS = 10000;
  // under the idle timeouts of common proxies (often 60 s), so an idle tab keeps its socket
  var IDLE_PING_MS = 25000;
  // a model that keeps calling the demo tool is stopped after this many automatic rounds
  var MAX_TOOL_ROUNDS = 3;
  // the server closed the socket on purpose (not a member, viewer, ...): retrying is pointless
  var REFUSAL_CODES = [4400, 4401, 4403];
  // the settings a refused request can name (its chat.error ``param``), by that name; the
  // field's label starts the message shown next to it ("Max tokens must be ...")
  var FIELDS = {
    "options.max_tokens": "pg-max-tokens",
    "options.temperature": "pg-temperature",
    model: "pg-model",
  };

  var DEMO_TOOL = {
    type: "function",
    function: {
      name: root.dataset.toolName || "get_weather",
      description: "The current weather in a city",
      parameters: {
        type: "object",
        properties: { city: { type: "string", description: "City name" } },
        required: ["city"],
      },
    },
  };

  function byId(id) {
    return document.getElementById(id);
  }

  var log = byId("pg-log");
  var statusLine = byId("pg-status");
  var prompt = byId("pg-prompt");
  var sendButton = byId("pg-send");
  var stopButton = byId("pg-stop");
  var tenantPicker = byId("pg-tenant");

  var socket = null;
  var reconnectDelay = RECONNECT_FIRST_MS;
  var reconnectTimer = null;
  var pingTimer = null;
  var requestCounter = 0;
  // this conversation as OpenAI-shaped messages, without the system prompt (read anew each turn)
  var history = [];
  // the turn whose reply is streaming, or null
  var running = null;

  // --- the socket ----------------------------------------------------------------------

  function socketUrl(slug) {
    var scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    return scheme + "//" + window.location.host + root.dataset.wsPath +
      "?tenant=" + encodeURIComponent(slug);
  }

  function isOpen() {
    return socket !== null && socket.readyState === WebSocket.OPEN;
  }

  function tenantName() {
    var option = tenantPicker.options[tenantPicker.selectedIndex];
    return option ? option.textContent : tenantPicker.value;
  }

  function connect() {
    window.clearTimeout(reconnectTimer);
    var ws = new WebSocket(socketUrl(tenantPicker.value));
    socket = ws;
    setStatus("Connecting as " + tenantName() + "…", "connecting");
    ws.addEventListener("open", function () {
      if (ws !== socket) {
        return;
      }
      reconnectDelay = RECONNECT_FIRST_MS;
      setStatus("Connected as " + tenantName(), "open");
      schedulePing();
      updateButtons();
    });
    ws.addEventListener("message", function (message) {
      if (ws !== socket) {
        return;
      }
      schedulePing();
      var event;
      try {
        event = JSON.parse(message.data);
      } catch (error) {
        return; // the server only sends JSON; anything else is not ours to show
      }
      handle(event);
    });
    ws.addEventListener("close", function (closed) {
      if (ws !== socket) {
        return; // a socket we replaced on purpose (tenant switch)
      }
      socket = null;
      window.clearTimeout(pingTimer);
      if (running) {
        failTurn(running, "connection_lost", "The connection closed before the reply finished.");
      }
      updateButtons();
      if (REFUSAL_CODES.indexOf(closed.code) !== -1) {
        setStatus("The chat refused this tenant (close code " + closed.code + ").", "refused");
        return;
      }
      setStatus("Disconnected, reconnecting…", "reconnecting");
      reconnectTimer = window.setTimeout(connect, reconnectDelay);
      reconnectDelay = Math.min(reconnectDelay * 2, RECONNECT_MAX_MS);
    });
  }

  function disconnect() {
    window.clearTimeout(reconnectTimer);
    window.clearTimeout(pingTimer);
    var ws = socket;
    socket = null; // before close(), so its close handler knows it was replaced
    if (ws) {
      ws.close(1000);
    }
  }

  function schedulePing() {
    window.clearTimeout(pingTimer);
    pingTimer = window.setTimeout(function () {
      if (isOpen()) {
        socket.send(JSON.stringify({ type: "ping" }));
      }
      schedulePing();
    }, IDLE_PING_MS);
  }

  function setStatus(text, state) {
    statusLine.textContent = text;
    statusLine.dataset.state = state;
  }

  // --- events from the server ----------------------------------------------------------

  function handle(event) {
    if (event.type === "pong") {
      return;
    }
    if (event.type === "chat.error" && (event.id === null || event.id === undefined)) {
      addError(event.code, event.message); // about the socket or an unreadable message
      return;
    }
    if (!running || event.id !== running.id) {
      return; // a late event of a turn already finished here (stopped, connection lost)
    }
    var turn = running;
    if (event.type === "chat.delta") {
      markFirstToken(turn);
      turn.text.appendData(event.text);
      turn.content += event.text;
      turn.bubble.dataset.deltas = String(Number(turn.bubble.dataset.deltas) + 1);
      scrollDown();
    } else if (event.type === "chat.tool_call") {
      markFirstToken(turn);
      addToolCall(turn, event);
    } else if (event.type === "chat.usage") {
      turn.usage = event;
    } else if (event.type === "chat.done") {
      finishTurn(turn, event);
    } else if (event.type === "chat.error") {
      var fieldMessage = showServerFieldError(event.param, event.message);
      failTurn(turn, event.code, fieldMessage || event.message);
    }
  }

  function markFirstToken(turn) {
    if (turn.firstAt === null) {
      turn.firstAt = window.performance.now();
      turn.meta.textContent = "streaming… · first token " + duration(turn.firstAt - turn.sentAt);
      turn.bubble.dataset.firstToken = "1";
    }
  }

  // --- settings that need fixing -------------------------------------------------------

  function fieldLabel(input) {
    var label = document.querySelector('label[for="' + input.id + '"]');
    return label ? label.textContent.trim() : input.name;
  }

  function errorSlot(input) {
    return byId(input.id + "-error");
  }

  function setFieldError(input, text) {
    var slot = errorSlot(input);
    input.setAttribute("aria-invalid", "true");
    if (slot) {
      slot.textContent = text;
    }
  }

  function clearFieldError(input) {
    var slot = errorSlot(input);
    input.removeAttribute("aria-invalid");
    if (slot) {
      slot.textContent = "";
    }
  }

  // the browser's own check of the number fields (their min, max and step), said the way
  // the server would say it, before anything is sent
  function invalidFields() {
    var problems = [];
    ["pg-temperature", "pg-max-tokens"].forEach(function (id) {
      var input = byId(id);
      var validity = input.validity;
      var label = fieldLabel(input);
      var text = "";
      if (validity.badInput) {
        text = label + " must be a number";
      } else if (validity.rangeUnderflow) {
        text = label + " must be at least " + input.min;
      } else if (validity.rangeOverflow) {
        text = label + " must be at most " + input.max;
      } else if (validity.stepMismatch) {
        text = label + " must be a whole number";
      }
      if (text) {
        setFieldError(input, text);
        problems.push(input);
      } else {
        clearFieldError(input);
      }
    });
    return problems;
  }

  // a refusal that names one of the settings ("options.max_tokens: must be between 1 and
  // 1000000, got -1") goes next to that field, in its words: "Max tokens must be between 1
  // and 1000000". Returns that text, or "" when the refusal is about no field here.
  function showServerFieldError(param, message) {
    var input = param && FIELDS[param] ? byId(FIELDS[param]) : null;
    if (!input) {
      return "";
    }
    var reason = String(message || "");
    if (reason.indexOf(param + ":") === 0) {
      reason = reason.slice(param.length + 1).trim();
    }
    reason = reason.replace(/, got .*$/, "");
    var text = fieldLabel(input) + " " + (reason || "is not valid");
    setFieldError(input, text);
    input.focus();
    return text;
  }

  // --- turns ---------------------------------------------------------------------------

  function newRequestId() {
    requestCounter += 1;
    return "pg-" + Date.now().toString(36) + "-" + requestCounter;
  }

  function chatRequest(id) {
    var messages = [];
    var system = byId("pg-system").value.trim();
    if (system) {
      messages.push({ role: "system", content: system });
    }
    var request = {
      type: "chat.request",
      id: id,
      model: byId("pg-model").value,
      messages: messages.concat(history),
    };
    if (byId("pg-demo-tool").checked) {
      request.tools = [DEMO_TOOL];
      request.tool_choice = "auto";
    }
    var options = {};
    var temperature = byId("pg-temperature").value;
    if (temperature !== "") {
      options.temperature = Number(temperature);
    }
    var maxTokens = byId("pg-max-tokens").value;
    if (maxTokens !== "") {
      options.max_tokens = Number(maxTokens);
    }
    if (Object.keys(options).length) {
      request.options = options;
    }
    return request;
  }

  function startTurn(round, asked) {
    var id = newRequestId();
    var bubble = addMessage("msg msg-assistant");
    var body = document.createElement("div");
    body.className = "msg-body";
    var text = document.createTextNode("");
    body.appendChild(text);
    var calls = document.createElement("div");
    calls.className = "msg-tools";
    var meta = document.createElement("div");
    meta.className = "msg-meta";
    meta.textContent = "waiting for the first token…";
    bubble.appendChild(body);
    bubble.appendChild(calls);
    bubble.appendChild(meta);
    bubble.dataset.requestId = id;
    bubble.dataset.state = "streaming";
    bubble.dataset.deltas = "0";
    bubble.setAttribute("aria-busy", "true");
    running = {
      id: id,
      round: round,
      bubble: bubble,
      text: text,
      calls: calls,
      meta: meta,
      content: "",
      toolCalls: [],
      usage: null,
      sentAt: window.performance.now(),
      firstAt: null,
      // the user's message that opened this turn (round 1 only): {text, bubble}
      asked: asked || null,
    };
    socket.send(JSON.stringify(chatRequest(id)));
    schedulePing();
    updateButtons();
  }

  function finishTurn(turn, done) {
    running = null;
    var stopped = done.finish_reason === "cancelled";
    turn.bubble.dataset.state = stopped ? "stopped" : "done";
    turn.bubble.removeAttribute("aria-busy");
    if (stopped) {
      turn.bubble.classList.add("msg-stopped");
    }
    showMeta(turn, done, window.performance.now() - turn.sentAt);
    if (turn.content || turn.toolCalls.length) {
      var message = { role: "assistant", content: turn.content || null };
      if (turn.toolCalls.length) {
        message.tool_calls = turn.toolCalls;
      }
      history.push(message);
    }
    if (turn.toolCalls.length) {
      // every call needs its result in the history, or the next turn is refused upstream
      answerToolCalls(turn);
      if (!stopped && turn.round < MAX_TOOL_ROUNDS && isOpen()) {
        startTurn(turn.round + 1);
        return;
      }
    }
    updateButtons();
  }

  function failTurn(turn, code, message) {
    running = null;
    turn.bubble.removeAttribute("aria-busy");
    if (!turn.content && !turn.toolCalls.length) {
      turn.bubble.remove();
      if (turn.asked && history[history.length - 1] === turn.asked.message) {
        // refused before any answer: the question leaves the history (sent again after a
        // fix, it would otherwise be in the conversation twice) and goes back in the box
        history.pop();
        turn.asked.bubble.remove();
        if (!prompt.value) {
          prompt.value = turn.asked.message.content;
        }
      }
    } else {
      turn.bubble.dataset.state = "error";
      turn.meta.textContent = "failed";
    }
    addError(code, message);
    updateButtons();
  }

  function stopTurn() {
    if (!running) {
      return;
    }
    running.meta.textContent = "stopping…";
    if (isOpen()) {
      socket.send(JSON.stringify({ type: "chat.cancel", id: running.id }));
    } else {
      finishTurn(running, { finish_reason: "cancelled" });
    }
  }

  // --- the demo tool -------------------------------------------------------------------

  function demoResult(call) {
    if (call.function.name !== DEMO_TOOL.function.name) {
      return { error: "the playground has no tool named " + call.function.name };
    }
    var args = {};
    try {
      args = JSON.parse(call.function.arguments || "{}");
    } catch (error) {
      return { error: "the arguments are not JSON" };
    }
    return { city: String(args.city || "unknown"), forecast: "sunny", temperature_c: 21,
      note: "made up by the aipk playground" };
  }

  function answerToolCalls(turn) {
    turn.toolCalls.forEach(function (call, index) {
      var result = JSON.stringify(demoResult(call));
      history.push({ role: "tool", tool_call_id: call.id, content: result });
      var shown = document.createElement("div");
      shown.className = "tool-result";
      shown.textContent = "→ " + result;
      turn.calls.children[index].appendChild(shown);
    });
  }

  // --- the page ------------------------------------------------------------------------

  function addMessage(className) {
    var node = document.createElement("div");
    node.className = className;
    log.appendChild(node);
    scrollDown();
    return node;
  }

  function addToolCall(turn, event) {
    turn.toolCalls.push({
      id: event.call_id,
      type: "function",
      function: { name: event.name, arguments: event.arguments },
    });
    var block = document.createElement("div");
    block.className = "tool-call";
    var name = document.createElement("strong");
    name.textContent = event.name;
    var args = document.createElement("span");
    args.className = "tool-arguments";
    args.textContent = " " + event.arguments;
    block.appendChild(name);
    block.appendChild(args);
    turn.calls.appendChild(block);
    scrollDown();
  }

  function addError(code, message) {
    var node = addMessage("msg msg-error");
    node.setAttribute("role", "alert");
    node.dataset.code = code || "";
    node.textContent = (message || "The request failed.") + (code ? " (" + code + ")" : "");
  }

  function duration(ms) {
    return ms < 1000 ? Math.round(ms) + " ms" : (ms / 1000).toFixed(2) + " s";
  }

  function metaPart(className, text) {
    var span = document.createElement("span");
    span.className = className;
    span.textContent = text;
    return span;
  }

  function showMeta(turn, done, totalMs) {
    var parts = [];
    if (done.finish_reason === "cancelled") {
      parts.push(metaPart("pg-stopped", "Stopped"));
    } else if (done.finish_reason === "length") {
      parts.push(metaPart("pg-finish", "cut at max tokens"));
    }
    var usage = turn.usage;
    if (usage) {
      var tokens = usage.prompt_tokens + " prompt + " + usage.completion_tokens +
        " completion tokens" + (usage.estimated ? " (estimated)" : "");
      var cost = usage.cost_usd === null ? "cost unknown" : "$" + usage.cost_usd;
      parts.push(metaPart("pg-usage", tokens + " · " + cost + (usage.cached ? " · cached" : "")));
    }
    var latency = (turn.firstAt === null ? "" :
      "first token " + duration(turn.firstAt - turn.sentAt) + " · ") + "done in " + duration(totalMs);
    parts.push(metaPart("pg-latency", latency));
    if (done.provider || done.model) {
      parts.push(metaPart("pg-via", [done.provider, done.model].filter(Boolean).join(" · ")));
    }
    turn.meta.textContent = "";
    parts.forEach(function (part, index) {
      if (index) {
        turn.meta.appendChild(document.createTextNode(" · "));
      }
      turn.meta.appendChild(part);
    });
  }

  function scrollDown() {
    log.scrollTop = log.scrollHeight;
  }

  function hasModel() {
    var model = byId("pg-model");
    return model !== null && !model.disabled && model.value !== "";
  }

  function updateButtons() {
    sendButton.disabled = running !== null || !isOpen() || !hasModel();
    stopButton.disabled = running === null;
  }

  function send() {
    var text = prompt.value.trim();
    if (!text || running || !isOpen() || !hasModel()) {
      return;
    }
    var problems = invalidFields();
    if (problems.length) {
      problems[0].focus();
      return; // the message stays in the box, to send once the setting is fixed
    }
    var message = { role: "user", content: text };
    history.push(message);
    var bubble = addMessage("msg msg-user");
    bubble.textContent = text;
    prompt.value = "";
    startTurn(1, { message: message, bubble: bubble });
  }

  function newConversation() {
    if (running) {
      stopTurn();
      running = null;
    }
    history = [];
    log.textContent = "";
    updateButtons();
  }

  byId("pg-composer").addEventListener("submit", function (event) {
    event.preventDefault();
    send();
  });
  byId("pg-settings").addEventListener("submit", function (event) {
    event.preventDefault();
  });
  prompt.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send();
    }
  });
  ["pg-temperature", "pg-max-tokens", "pg-model"].forEach(function (id) {
    var input = byId(id);
    if (input) {
      input.addEventListener("input", function () {
        clearFieldError(input);
      });
    }
  });
  stopButton.addEventListener("click", stopTurn);
  byId("pg-new").addEventListener("click", newConversation);
  tenantPicker.addEventListener("change", function () {
    // another tenant is another caller: a fresh socket and a fresh conversation
    newConversation();
    disconnect();
    connect();
  });
  // htmx replaced the model picker after a tenant change
  document.body.addEventListener("htmx:afterSwap", updateButtons);

  connect();
})();
