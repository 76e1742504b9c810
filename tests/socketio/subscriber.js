// The JavaScript socket.io-client from npm against the broker, on one transport only.
//
//     node subscriber.js URL websocket|polling TOPIC
//
// Prints `ready <transport>` once subscribed, `message <topic> <message>` for each
// delivery; reads `publish TOPIC MESSAGE` and `quit` on stdin.
const { io } = require("socket.io-client");
const readline = require("readline");

const [url, transport, topic] = process.argv.slice(2);
const socket = io(url, { transports: [transport], reconnection: false, timeout: 10000 });

socket.on(topic, (data) => console.log(`message ${topic} ${data.message}`));
socket.on("connect_error", (error) => {
  console.error(`connect_error ${error.message}`);
  process.exit(1);
});
socket.on("connect", async () => {
  const answer = await socket.timeout(10000).emitWithAck("subscribe", { topic });
  console.log(`subscribe ${JSON.stringify(answer)}`);
  console.log(`ready ${socket.io.engine.transport.name}`);
});

const commands = readline.createInterface({ input: process.stdin });
commands.on("line", async (line) => {
  const [word, name, ...rest] = line.split(" ");
  if (word === "publish") {
    const answer = await socket
      .timeout(10000)
      .emitWithAck("publish", { topic: name, message: rest.join(" ") });
    console.log(`published ${JSON.stringify(answer)}`);
  } else if (word === "quit") {
    // Node exits once the disconnect is sent (over polling, a last request).
    socket.disconnect();
    commands.close();
    console.log("bye");
  }
});
