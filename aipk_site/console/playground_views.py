from django.contrib.auth.decorators import login_required
from django.shortcuts import render


@login_required
def playground(request):  # TEMPORARY: replaced by the playground helper
    return render(request, "console/dashboard.html", {"nav_section": "playground"})
