// A fake OpenAI-compatible chat-completions endpoint on loopback, for driving the real OpenCode
// offline. Every request body is logged; each answer is chosen by a script function from the
// request (usually: how many tool results the conversation already holds) and streamed as SSE
// chat-completion chunks, the way @ai-sdk/openai-compatible expects them.
import http from "node:http";

/**
 * @typedef {{ text: string } | { toolCalls: Array<{ name: string, arguments: object | string }> }} Turn
 * @param {(body: any, index: number) => Turn} script
 */
export async function startFakeModel(script) {
  const requests = [];
  let callCounter = 0;
  const server = http.createServer((req, res) => {
    let raw = "";
    req.setEncoding("utf8");
    req.on("data", (c) => (raw += c));
    req.on("end", () => {
      if (req.method !== "POST" || !req.url.endsWith("/chat/completions")) {
        res.writeHead(404, { "content-type": "application/json" });
        res.end(JSON.stringify({ error: { message: `fake model: no route ${req.method} ${req.url}` } }));
        return;
      }
      let body;
      try {
        body = JSON.parse(raw);
      } catch {
        res.writeHead(400).end();
        return;
      }
      const index = requests.length;
      requests.push(body);
      let turn;
      try {
        turn = script(body, index);
      } catch (err) {
        turn = { text: `fake model script error: ${err?.stack ?? err}` };
      }
      res.writeHead(200, {
        "content-type": "text/event-stream",
        "cache-control": "no-cache",
        connection: "keep-alive",
      });
      const id = `chatcmpl-fake-${index}`;
      const chunk = (delta, finish = null, extra = {}) =>
        `data: ${JSON.stringify({
          id,
          object: "chat.completion.chunk",
          created: Math.floor(Date.now() / 1000),
          model: body.model ?? "m",
          choices: [{ index: 0, delta, finish_reason: finish }],
          ...extra,
        })}\n\n`;
      const usage = { usage: { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 } };
      if ("toolCalls" in turn) {
        res.write(chunk({ role: "assistant", content: null }));
        turn.toolCalls.forEach((call, i) => {
          const args = typeof call.arguments === "string" ? call.arguments : JSON.stringify(call.arguments);
          res.write(
            chunk({
              tool_calls: [
                { index: i, id: `call_${index}_${i}_${++callCounter}`, type: "function", function: { name: call.name, arguments: args } },
              ],
            }),
          );
        });
        res.write(chunk({}, "tool_calls", usage));
      } else {
        res.write(chunk({ role: "assistant", content: "" }));
        res.write(chunk({ content: turn.text }));
        res.write(chunk({}, "stop", usage));
      }
      res.end("data: [DONE]\n\n");
    });
  });
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const { port } = server.address();
  return {
    port,
    baseURL: `http://127.0.0.1:${port}/v1`,
    requests,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}

/** The tool results (role "tool" messages) of a chat-completions request, oldest first. */
export function toolResults(body) {
  return (body.messages ?? []).filter((m) => m.role === "tool").map((m) =>
    typeof m.content === "string" ? m.content : (m.content ?? []).map((p) => p.text ?? "").join(""),
  );
}
