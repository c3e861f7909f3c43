// Type declarations for the parts of xmpp.js this project uses; the packages ship none.

declare module "@xmpp/xml" {
  export class Element {
    constructor(name: string, attrs?: Record<string, string | undefined>);
    name: string;
    attrs: Record<string, string | undefined>;
    children: Array<Element | string>;
    parent: Element | null;
    is(name: string, xmlns?: string): boolean;
    getChild(name: string, xmlns?: string): Element | undefined;
    getChildren(name: string, xmlns?: string): Element[];
    getChildElements(): Element[];
    getChildText(name: string, xmlns?: string): string | null;
    getText(): string;
    append(...nodes: Array<Element | string>): Element;
    toString(): string;
  }
  type Child = Element | string | null | undefined | false;
  function xml(
    name: string,
    attrs?: Record<string, string | undefined> | null,
    ...children: Array<Child | Child[]>
  ): Element;
  /** The streaming parser: `start` (the root), `element` (each child of the root), `end` (the root closed), `error`. */
  export class Parser {
    on(event: "start" | "element" | "end", listener: (element: Element) => void): this;
    on(event: "error", listener: (error: Error) => void): this;
    write(data: string): void;
    end(data?: string): void;
  }
  namespace xml {
    export { Element, Parser };
  }
  export default xml;
}

declare module "@xmpp/component" {
  import type { EventEmitter } from "node:events";
  import type { Socket } from "node:net";
  import type xmlFn from "@xmpp/xml";
  import type { Element } from "@xmpp/xml";

  export type Status =
    | "offline"
    | "connecting"
    | "connect"
    | "opening"
    | "open"
    | "online"
    | "closing"
    | "close"
    | "disconnecting"
    | "disconnect";

  export interface ComponentOptions {
    service: string;
    domain: string;
    password: string | ((authenticate: (password: string) => Promise<void>) => Promise<void>);
  }

  export interface Component extends EventEmitter {
    status: Status;
    socket: Socket | null;
    options: { service: string; domain: string; lang?: string };
    reconnect: { stop(): void; start(): void };
    start(): Promise<unknown>;
    stop(): Promise<unknown>;
    connect(service: string): Promise<unknown>;
    open(options: { domain: string; lang?: string }): Promise<unknown>;
    disconnect(timeout?: number): Promise<void>;
    send(element: Element): Promise<void>;
    write(data: string): Promise<void>;
  }

  export function component(options: ComponentOptions): Component;
  export const xml: typeof xmlFn;
}

declare module "@xmpp/jid" {
  export class JID {
    constructor(local: string | undefined, domain: string, resource?: string);
    local: string;
    domain: string;
    resource: string;
    bare(): JID;
    equals(other: JID): boolean;
    toString(unescapeLocal?: boolean): string;
  }
  interface JidFunction {
    (address: string): JID;
    (local: string | undefined, domain: string, resource?: string): JID;
    parse(address: string): JID;
    jid: JidFunction;
    JID: typeof JID;
  }
  const jid: JidFunction;
  export default jid;
  export function parse(address: string): JID;
}

declare module "@xmpp/client" {
  import type { EventEmitter } from "node:events";
  import type { Socket } from "node:net";
  import type xmlFn from "@xmpp/xml";
  import type { Element } from "@xmpp/xml";

  export interface XmppClient extends EventEmitter {
    status: string;
    socket: Socket | null;
    reconnect: { stop(): void };
    middleware: { use(fn: (ctx: never, next: () => Promise<unknown>) => unknown): void };
    start(): Promise<unknown>;
    stop(): Promise<unknown>;
    send(element: Element): Promise<void>;
    /** Writes raw XML to the stream (tests: stanzas the builder cannot make). */
    write(data: string): Promise<void>;
  }
  export function client(options: Record<string, unknown>): XmppClient;
  export const xml: typeof xmlFn;
}
