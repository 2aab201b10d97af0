"""Channel adapters, one module per protocol (helper modules are named for their protocol, e.g.
`mastodon_media`). `base` is the contract and its errors, `http` the HTTP plumbing every web
adapter shares, `transport` the aiohttp transport under each channel's httpx client, `registry` the
map from config.yaml's `type` to the class. Adapters may import the core's vocabulary
(publisher.model, publisher.errors, publisher.clock) and nothing else of it; they never touch the store.
"""
