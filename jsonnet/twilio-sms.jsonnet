// Twilio: send courier SMS through the Twilio Programmable Messaging API.
// Use it for an extra courier channel with `id: sms`.
//
//   Endpoint:     POST https://api.twilio.com/2010-04-01/Accounts/<AccountSID>/Messages.json
//   Content-Type: application/x-www-form-urlencoded (set it in the channel's headers;
//                 the courier turns this flat object of strings into a form body)
//   Auth:         auth: { type: basic_auth, config: { user: <AccountSID>, password: <AuthToken> } }
//
// Edit `from` below: a Twilio phone number in E.164 format. To send through a
// Messaging Service instead, replace the `From` field by `MessagingServiceSid: 'MG...'`.
local from = '+14155550100';

function(ctx) {
  To: ctx.Recipient,
  From: from,
  Body: ctx.Body,
}
