function(ctx) {a: if "x" in ctx then ctx.x else null, b: [1, "s" + ctx.recipient]}
